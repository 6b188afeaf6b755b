"""Train a classifier job through the raw ``mistralai`` SDK, for the tests that drive the factory.

Deliberately not ``moderation_helpers.recipe.jobs``: the factory's tests go through the SDK
alone, so a bug in the helpers cannot hide a bug in the server.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

ENDED = ("SUCCESS", "FAILED", "FAILED_VALIDATION", "CANCELLED")


def train_through_sdk(
    client: Any,
    files: Mapping[str, tuple[str, bytes]],
    hyperparameters: Mapping[str, Any],
    *,
    suffix: str | None = None,
    timeout: float = 600.0,
) -> Any:
    """Upload ``files`` (``{"train"|"validation": (file name, bytes)}``), create an auto-started
    classifier job, wait until it ends and return it (the SDK's job object), SUCCESS or not."""
    ids = {
        split: client.files.upload(file={"file_name": name, "content": content}).id
        for split, (name, content) in files.items()
    }
    job = client.fine_tuning.jobs.create(
        model="ministral-3b-latest",
        job_type="classifier",
        training_files=[{"file_id": ids["train"], "weight": 1}],
        validation_files=[ids["validation"]] if "validation" in ids else None,
        hyperparameters=dict(hyperparameters),
        suffix=suffix,
        auto_start=True,
    )
    deadline = time.monotonic() + timeout
    while job.status not in ENDED:
        assert time.monotonic() < deadline, f"job {job.id} still {job.status} after {timeout} s"
        time.sleep(1)
        job = client.fine_tuning.jobs.get(job_id=job.id)
    return job


def fine_tuned(listing: Any) -> list[Any]:
    """The fine-tuned models of a ``models.list()`` answer (it also lists the base encoders)."""
    return [m for m in listing.data if m.type != "base"]
