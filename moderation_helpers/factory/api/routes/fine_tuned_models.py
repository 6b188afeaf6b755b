"""``/v1/fine_tuning/models/{id}``: rename and describe a fine-tuned model, archive and
unarchive it, and (a local extension) publish the thresholds its moderation flags use.

An archived model is listed with ``archived: true`` and still classifies and moderates, as on
the API: archiving tidies the list, it does not switch a model off.

``PUT /v1/fine_tuning/models/{id}/thresholds`` takes the ``thresholds.json`` document that
``04_infer`` writes (``moderation_helpers.recipe.moderate.publish_thresholds`` sends it); the
thresholds are kept with the model in the store, and ``/v1/moderations`` flags with them.
``GET`` on the same path shows what moderation uses now, ``DELETE`` goes back to 0.5. Each
answer also names the ``graph`` (``fp32`` or ``int8``) that scores the model now, null while the
factory has not loaded it: ``04_infer`` records it in ``thresholds.json``, since thresholds hold
for the scores they were tuned on. The published document's own ``graph`` (the one they were
tuned on) is kept beside them and answered as ``tuned_graph``; the model's folder
(``/folder``) writes it into its ``thresholds.json``. Mistral's API has no such routes.
"""

from __future__ import annotations

import math
from typing import Any

from fastapi import APIRouter

from moderation_helpers.core.flags import DEFAULT_THRESHOLD
from moderation_helpers.factory.api.responses import invalid, model_out
from moderation_helpers.factory.api.routes.deps import ModelsDep, StoreDep
from moderation_helpers.factory.api.routes.models import model_or_404
from moderation_helpers.factory.api.routes.moderations import flags_rule
from moderation_helpers.factory.api.schemas import ThresholdsIn, UpdateModelIn
from moderation_helpers.factory.serving.model_cache import ModelCache
from moderation_helpers.factory.store.db import Store

router = APIRouter(prefix="/v1/fine_tuning/models", tags=["fine-tuned models"])


def _update(store: Store, model_id: str, **changes: Any) -> dict[str, Any]:
    model_or_404(store, model_id)
    return store.update_model_meta(model_id, **changes) or model_or_404(store, model_id)


@router.patch("/{model_id}")
def update_model(store: StoreDep, model_id: str, body: UpdateModelIn) -> dict[str, Any]:
    changes = body.model_dump(exclude_unset=True, exclude_none=True)
    return model_out(_update(store, model_id, **changes), store.workspace)


@router.post("/{model_id}/archive")
def archive_model(store: StoreDep, model_id: str) -> dict[str, Any]:
    _update(store, model_id, archived=True)
    return {"id": model_id, "object": "model", "archived": True}


@router.delete("/{model_id}/archive")
def unarchive_model(store: StoreDep, model_id: str) -> dict[str, Any]:
    _update(store, model_id, archived=False)
    return {"id": model_id, "object": "model", "archived": False}


def _thresholds_out(record: dict[str, Any], models: ModelCache) -> dict[str, Any]:
    table, safe_label, source = flags_rule(record)
    thresholds: dict[str, dict[str, float]] = {}
    for (target, label), value in table.limits.items():
        thresholds.setdefault(target, {})[label] = value
    return {
        "model": record["id"],
        "source": source,
        "default": DEFAULT_THRESHOLD,
        "safe_label": safe_label,
        "thresholds": thresholds,
        "graph": models.loaded_graph(record["id"]),
        "tuned_graph": (record.get("meta") or {}).get("thresholds_graph"),
    }


@router.get("/{model_id}/thresholds")
def get_thresholds(store: StoreDep, models: ModelsDep, model_id: str) -> dict[str, Any]:
    return _thresholds_out(model_or_404(store, model_id), models)


@router.put("/{model_id}/thresholds")
def put_thresholds(
    store: StoreDep, models: ModelsDep, model_id: str, body: ThresholdsIn
) -> dict[str, Any]:
    record = model_or_404(store, model_id)
    labels = {t["name"]: set(t["labels"]) for t in record["targets"]}
    for target, values in body.thresholds.items():
        if target not in labels:
            raise invalid(["thresholds", target], f"the model has no target {target!r}")
        for label, value in values.items():
            where = ["thresholds", target, label]
            if label not in labels[target]:
                raise invalid(where, f"target {target!r} has no label {label!r}")
            if not (math.isfinite(value) and 0.0 <= value <= 1.0):
                raise invalid(where, "a threshold is a score between 0 and 1", value)
    updated = _update(
        store,
        model_id,
        thresholds=body.thresholds,
        safe_label=body.safe_label,
        thresholds_graph=body.graph,
    )
    return _thresholds_out(updated, models)


@router.delete("/{model_id}/thresholds")
def delete_thresholds(store: StoreDep, models: ModelsDep, model_id: str) -> dict[str, Any]:
    cleared = _update(store, model_id, thresholds=None, safe_label=None, thresholds_graph=None)
    return _thresholds_out(cleared, models)
