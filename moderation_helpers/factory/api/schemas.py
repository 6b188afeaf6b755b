"""Request bodies of the local factory, as the Mistral API (and the ``mistralai`` SDK) send them.

Pydantic checks them, so a malformed request gets FastAPI's 422 whose ``detail`` names the
field (``loc``), the format the SDK's ``HTTPValidationError`` reads. Responses are plain dicts
built in :mod:`moderation_helpers.factory.api.responses` in the shapes the SDK's response
models parse.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, field_validator

from moderation_helpers.model.folder import VARIANT_FILES


class TrainingFileIn(BaseModel):
    """One training file of a job and its sampling weight."""

    file_id: str = Field(min_length=1)
    weight: float = Field(1.0, gt=0)


class HyperparametersIn(BaseModel):
    """A classifier job's hyperparameters; an unknown name is a 422, not silently ignored."""

    model_config = ConfigDict(extra="forbid")

    training_steps: int | None = Field(None, ge=1)
    learning_rate: float = Field(1e-4, gt=0, le=1)
    weight_decay: float | None = Field(0.1, ge=0)
    warmup_fraction: float | None = Field(0.05, ge=0, le=1)
    epochs: float | None = Field(None, gt=0)
    seq_len: int | None = Field(None, ge=1)


class ClassifierTargetIn(BaseModel):
    """A classification task; ``loss_function`` left out is inferred from the data."""

    name: str = Field(min_length=1)
    labels: list[str] = Field(min_length=1)
    weight: float = Field(1.0, gt=0)
    loss_function: Literal["single_class", "multi_class"] | None = None


class WandbIntegrationIn(BaseModel):
    """Recorded on the job and echoed back; the local factory does not call W&B."""

    type: Literal["wandb"] = "wandb"
    project: str
    name: str | None = None
    api_key: str | None = None  # accepted for compatibility, never stored
    run_name: str | None = None


class JobIn(BaseModel):
    """``POST /v1/fine_tuning/jobs``."""

    model: str = Field(min_length=1)
    hyperparameters: HyperparametersIn
    training_files: list[TrainingFileIn] = Field(min_length=1)
    validation_files: list[str] | None = None
    suffix: str | None = Field(None, max_length=18)
    integrations: list[WandbIntegrationIn] | None = None
    auto_start: bool = True
    invalid_sample_skip_percentage: float = Field(0.0, ge=0, le=0.5)
    # Only classifier jobs are trained here; left out means classifier.
    job_type: Literal["classifier"] | None = "classifier"
    repositories: list[Any] | None = None
    classifier_targets: list[ClassifierTargetIn] | None = None


class ClassificationIn(BaseModel):
    """``POST /v1/classifications``: the SDK sends ``input``; ``inputs`` is accepted too."""

    model: str = Field(min_length=1)
    inputs: str | list[str] = Field(validation_alias=AliasChoices("input", "inputs"))
    metadata: dict[str, Any] | None = None


class ChatClassificationIn(BaseModel):
    """``POST /v1/chat/classifications`` and ``/v1/chat/moderations``: one conversation or
    several, in any of the API's shapes (checked by :func:`routes.chat.conversations_of`)."""

    model: str = Field(min_length=1)
    inputs: Any = Field(validation_alias=AliasChoices("input", "inputs"))


class UpdateModelIn(BaseModel):
    """``PATCH /v1/fine_tuning/models/{id}``: what is left out stays as it is."""

    name: str | None = Field(None, max_length=256)
    description: str | None = Field(None, max_length=4096)


class ThresholdsIn(BaseModel):
    """``PUT /v1/fine_tuning/models/{id}/thresholds`` (local extension): the ``thresholds.json``
    document ``04_infer`` writes; ``thresholds``, ``safe_label`` and ``graph`` (the variant whose
    scores they were tuned on, kept so the model's folder can say it) are read."""

    thresholds: dict[str, dict[str, float]] = Field(min_length=1)
    safe_label: str | None = "safe"
    graph: str | None = None

    @field_validator("graph")
    @classmethod
    def _known_graph(cls, value: str | None) -> str | None:
        if value is not None and value not in VARIANT_FILES:
            raise ValueError(f"expected one of {sorted(VARIANT_FILES)} or null")
        return value
