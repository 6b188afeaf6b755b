"""The state a router needs, taken from ``app.state`` (set once by ``create_app``)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Query, Request

from moderation_helpers.factory.model_cache import ModelCache
from moderation_helpers.factory.store import Store
from moderation_helpers.factory.worker import Scheduler


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
