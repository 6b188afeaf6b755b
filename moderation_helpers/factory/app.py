"""The local Classifier Factory's HTTP API: the Mistral API's routes for files, classifier
fine-tuning jobs, fine-tuned models and classifications, in the shapes ``mistralai`` 2.x parses.

This module only assembles the app: the shared state (store, scheduler, loaded models), the
lifespan that starts and stops the job queue, the token check, and one router per resource
(``routes/``: find a route by its path).

Errors are the API's: 404 for an unknown id, 422 with a ``detail`` whose ``loc`` names the field,
409 for an action the job's status does not allow, 401 when a token is configured and the
request lacks ``Authorization: Bearer <token>``.
"""

from __future__ import annotations

import hmac
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import Depends, FastAPI, HTTPException, Request

from moderation_helpers.factory.model_cache import ModelCache
from moderation_helpers.factory.routes import classifications, files, jobs, models
from moderation_helpers.factory.runtime import RUNTIME_JSON
from moderation_helpers.factory.store import Store
from moderation_helpers.factory.worker import Scheduler


def create_app(
    store: Store | str | Path, token: str | None = None, *, run_scheduler: bool = True
) -> FastAPI:
    """The factory app over ``store``; with ``token``, every route requires it as Bearer.

    ``run_scheduler=False`` serves the API without validating or training (tests of the routes).
    """
    store = store if isinstance(store, Store) else Store(store)
    scheduler = Scheduler(store)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        store.recover()
        if run_scheduler:
            scheduler.start()
        try:
            yield
        finally:
            if run_scheduler:
                scheduler.stop()

    def check_token(request: Request) -> None:
        if token is None:
            return
        given = request.headers.get("authorization", "")
        scheme, _, value = given.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(value.encode(), token.encode()):
            raise HTTPException(
                status_code=401,
                detail="missing or wrong API token (send Authorization: Bearer <token>)",
                headers={"WWW-Authenticate": "Bearer"},
            )

    app = FastAPI(
        title="moderation-cookbook local Classifier Factory",
        lifespan=lifespan,
        dependencies=[Depends(check_token)],
    )
    app.state.store = store
    app.state.scheduler = scheduler
    app.state.models = ModelCache(runtime_cache=store.root / RUNTIME_JSON)
    for module in (files, jobs, models, classifications):
        app.include_router(module.router)
    return app
