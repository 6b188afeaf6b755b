"""The local Classifier Factory's HTTP API: the Mistral API's routes for files, classifier
fine-tuning jobs, fine-tuned models, classifications and moderations, in the shapes
``mistralai`` 2.x parses.

This module only assembles the app: the shared state (store, scheduler, loaded models), the
lifespan that starts and stops the job queue, the token check, and one router per resource
(``routes/``: find a route by its path): ``files`` (/v1/files), ``jobs`` (/v1/fine_tuning/jobs),
``fine_tuned_models`` (/v1/fine_tuning/models), ``model_folder`` (a local extension:
/v1/fine_tuning/models/{id}/folder, the exported model folder as one archive), ``models``
(/v1/models), ``classifications`` (/v1/classifications, /v1/chat/classifications),
``moderations`` (/v1/moderations, /v1/chat/moderations), ``explanations`` (a local extension:
/v1/moderations/explain, the moderation answer with the spans behind each flag). Any other /v1
path answers a 404 that says it is not implemented here.

Errors are the API's: 404 for an unknown id, 422 with a ``detail`` whose ``loc`` names the field,
409 for an action the job's status does not allow, 401 when a token is configured and the
request lacks ``Authorization: Bearer <token>``; beyond a limit (:mod:`.limits`) 413, 422 or
503 naming the limit, before any work is done.
"""

from __future__ import annotations

import hmac
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException as StarletteHTTPException

from moderation_helpers.factory.api.limits import BodyLimitMiddleware
from moderation_helpers.factory.api.routes import (
    classifications,
    explanations,
    files,
    fine_tuned_models,
    jobs,
    model_folder,
    models,
    moderations,
)
from moderation_helpers.factory.api.routes.deps import reject_unknown_query
from moderation_helpers.factory.config import ServingConfig
from moderation_helpers.factory.queue.scheduler import Scheduler
from moderation_helpers.factory.serving.model_cache import ModelCache
from moderation_helpers.factory.store.db import Store


def create_app(
    store: Store | str | Path,
    token: str | None = None,
    *,
    run_scheduler: bool = True,
    config: ServingConfig | None = None,
) -> FastAPI:
    """The factory app over ``store``; with ``token``, every route requires it as Bearer.

    ``config`` holds the request limits and batching settings (default: from the environment,
    see :mod:`.limits`). ``run_scheduler=False`` serves the API without validating or training
    (tests of the routes).
    """
    store = store if isinstance(store, Store) else Store(store)
    config = config or ServingConfig.from_env()
    scheduler = Scheduler(store)
    model_cache = ModelCache(config=config, store=store)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        store.recover()
        if run_scheduler:
            scheduler.start()
        try:
            yield
        finally:
            model_cache.close()
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

    app = FastAPI(title="moderation-cookbook local Classifier Factory", lifespan=lifespan)
    app.state.store = store
    app.state.scheduler = scheduler
    app.state.config = config
    app.state.models = model_cache
    routers = (
        files,
        jobs,
        fine_tuned_models,
        model_folder,
        models,
        classifications,
        moderations,
        explanations,
    )
    for module in routers:
        app.include_router(
            module.router, dependencies=[Depends(check_token), Depends(reject_unknown_query)]
        )
    # A signed file URL is its own credential (HMAC, expiry): no token asked.
    app.include_router(files.signed_router)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        detail, headers = exc.detail, dict(exc.headers or {})
        if exc.status_code == 404 and detail == "Not Found":  # no route has this path
            detail = (
                f"{request.url.path} is not implemented by the local Classifier Factory "
                "(see the README's list of what it does not implement)"
            )
        elif exc.status_code == 405:
            # Every method of the path, not only those of the first route that matched it.
            headers["Allow"] = ", ".join(allowed_methods(app, request.url.path))
        return JSONResponse({"detail": detail}, status_code=exc.status_code, headers=headers)

    # Outermost: a body over its limit is refused before anything reads it.
    app.add_middleware(BodyLimitMiddleware, config=config)
    return app


def allowed_methods(app: FastAPI, path: str) -> list[str]:
    """The methods the app's routes answer on ``path``."""
    return sorted(
        {
            method
            for route in app.routes
            if isinstance(route, APIRoute) and route.path_regex.match(path)
            for method in route.methods
        }
    )
