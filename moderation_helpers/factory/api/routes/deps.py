"""The state a router needs, taken from ``app.state`` (set once by ``create_app``)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Query, Request
from fastapi.dependencies.models import Dependant
from fastapi.exceptions import RequestValidationError

from moderation_helpers.factory.queue.scheduler import Scheduler
from moderation_helpers.factory.serving.model_cache import ModelCache
from moderation_helpers.factory.store.db import Store


def _store(request: Request) -> Store:
    return request.app.state.store


def _scheduler(request: Request) -> Scheduler:
    return request.app.state.scheduler


def _models(request: Request) -> ModelCache:
    return request.app.state.models


StoreDep = Annotated[Store, Depends(_store)]
SchedulerDep = Annotated[Scheduler, Depends(_scheduler)]
ModelsDep = Annotated[ModelCache, Depends(_models)]

# Bounds of the list routes' paging (page * page_size must stay an SQLite integer).
Page = Annotated[int, Query(ge=0, le=1_000_000, description="0-based page number")]
PageSize = Annotated[int, Query(ge=1, le=1_000, description="items per page")]


def reject_unknown_query(request: Request) -> None:
    """A query parameter the route does not declare is a 422 naming it, not silently ignored
    (a misspelt filter would otherwise list everything)."""
    route = request.scope.get("route")
    if route is None or not request.query_params:
        return
    known = _query_names(route.dependant)
    unknown = sorted(set(request.query_params) - known)
    if unknown:
        raise RequestValidationError(
            [
                {"loc": ("query", name), "msg": "unknown query parameter", "type": "value_error"}
                for name in unknown
            ]
        )


def _query_names(dependant: Dependant) -> set[str]:
    names = {p.alias for p in dependant.query_params}
    for sub in dependant.dependencies:
        names |= _query_names(sub)
    return names
