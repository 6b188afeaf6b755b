"""``/v1/models``: list, get and delete fine-tuned models; list and get the base encoders
(``type: "base"``) a job's ``model`` can name."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from moderation_helpers.classifier.encoders import ENCODERS, find_encoder
from moderation_helpers.factory.api.responses import base_model_out, model_out, not_found
from moderation_helpers.factory.api.routes.deps import ModelsDep, StoreDep
from moderation_helpers.factory.store.db import Store

router = APIRouter(prefix="/v1/models", tags=["models"])


def model_or_404(store: Store, model_id: str) -> dict[str, Any]:
    """The stored model record, or a 404 naming the id."""
    record = store.get_model(model_id)
    if record is None:
        raise not_found("model", model_id)
    return record


@router.get("")
def list_models(
    store: StoreDep, provider: str | None = None, model: str | None = None
) -> dict[str, Any]:
    # provider: every model here is the local factory's, so the filter is not applied.
    base = [find_encoder(model)] if model else list(ENCODERS.values())
    records = store.list_models(model)
    data = [base_model_out(spec) for spec in base if spec is not None]
    return {"object": "list", "data": data + [model_out(m, store.workspace) for m in records]}


@router.get("/{model_id:path}")
def get_model(store: StoreDep, model_id: str) -> dict[str, Any]:
    base = find_encoder(model_id)
    if base is not None and store.get_model(model_id) is None:
        return base_model_out(base)
    return model_out(model_or_404(store, model_id), store.workspace)


@router.delete("/{model_id:path}")
def delete_model(store: StoreDep, models: ModelsDep, model_id: str) -> dict[str, Any]:
    if not store.delete_model(model_id):  # one of two concurrent deletes wins, the other 404s
        raise not_found("model", model_id)
    models.evict(model_id)
    return {"id": model_id, "object": "model", "deleted": True}
