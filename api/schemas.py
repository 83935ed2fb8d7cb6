"""Response and request bodies (pydantic). The training spec itself is ``gan_engine.spec.Spec``."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Generic, Literal, Self, TypeVar, get_args

from pydantic import BaseModel, ConfigDict, Field, model_validator

from store.models import JOB_STATUSES

T = TypeVar("T")

JobStatus = Literal["queued", "running", "succeeded", "failed", "cancelled", "interrupted"]
assert set(get_args(JobStatus)) == set(JOB_STATUSES)


class Page(BaseModel, Generic[T]):
    """One page of a list; pass the last item's cursor as ``after`` for the next one."""

    data: list[T]
    has_more: bool


class ErrorDetail(BaseModel):
    code: str
    message: str
    param: str | None = None


class ErrorBody(BaseModel):
    error: ErrorDetail


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorBody, "description": "no API key, or an invalid or revoked one"},
    404: {"model": ErrorBody, "description": "no such object in this account"},
    422: {"model": ErrorBody, "description": "invalid request; `param` names the field"},
}


# --- datasets ----------------------------------------------------------------------------------


class DatasetOut(BaseModel):
    """An uploaded dataset: one validated pack in object storage."""

    id: str
    name: str
    n_images: int
    image_shape: list[int] = Field(description="[height, width, channels]")
    class_names: list[str] | None = Field(description="null when the images are unlabelled")
    num_classes: int
    size_bytes: int = Field(description="size of the stored pack")
    created_at: datetime


class BuiltinDatasetOut(BaseModel):
    """A dataset every account can train on: ``{"dataset": {"builtin": name}}``."""

    name: str
    kind: Literal["image", "points"]
    sample_shape: list[int] = Field(description="[height, width, channels], or [2] for points")
    n_images: int = Field(description="samples in the training split")
    class_names: list[str]
    num_classes: int
    description: str


# --- jobs --------------------------------------------------------------------------------------


class Progress(BaseModel):
    step: int
    total: int
    fraction: float
    images_per_s: float | None
    eta_s: float | None = Field(description="seconds left at the current speed (running jobs)")


class MetricPoint(BaseModel):
    step: int
    value: float | None = Field(description="null for NaN/inf")


class JobErrorOut(BaseModel):
    code: str | None
    message: str | None


class JobOut(BaseModel):
    id: str
    status: JobStatus
    spec: dict[str, Any] = Field(description="the normalised spec: every default filled in")
    dataset_id: str | None
    progress: Progress
    latest_metrics: dict[str, MetricPoint] = Field(description="per name, its newest point")
    summary_metrics: dict[str, Any] | None = Field(description="final metrics of a finished run")
    error: JobErrorOut | None
    model_id: str | None
    attempt: int = Field(description="1 for the first run; resumptions after a lost worker add 1")
    cancel_requested: bool
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    updated_at: datetime


class EventOut(BaseModel):
    seq: int = Field(description="1, 2, 3... per job: the cursor of this list")
    step: int | None
    level: Literal["info", "warning", "error"]
    code: str
    message: str
    created_at: datetime


class MetricSeries(BaseModel):
    """Time series grouped by name: ``{"d_loss": [[step, value], ...], ...}``, steps ascending."""

    data: dict[str, list[tuple[int, float | None]]]
    has_more: bool = Field(description="more steps follow: ask again with after_step=last_step")
    last_step: int | None = Field(description="the newest step in this answer")


class SampleOut(BaseModel):
    step: int
    url: str = Field(description="the PNG grid (one row per class for conditional models)")
    created_at: datetime


class CheckpointOut(BaseModel):
    step: int
    metrics: dict[str, float | None] | None
    created_at: datetime


# --- models ------------------------------------------------------------------------------------


class ModelOut(BaseModel):
    id: str
    job_id: str
    class_names: list[str] | None = Field(description="null for unconditional generators")
    num_classes: int
    image_shape: list[int] = Field(description="[height, width, channels], or [2] for points")
    spec: dict[str, Any]
    summary_metrics: dict[str, Any] | None
    created_at: datetime


SampleFormat = Literal["png_grid", "png_zip", "npy", "json"]


class SampleRequest(BaseModel):
    """What to generate. Give at most one of ``labels``, ``class_names`` or ``per_class``; with
    none, ``n`` samples (default 16) cycle through the classes of a conditional model. A single
    label or class name with ``n`` repeats it ``n`` times. Same seed and labels, same bytes."""

    model_config = ConfigDict(extra="forbid")

    labels: list[int] | None = Field(None, min_length=1, max_length=4096)
    class_names: list[str] | None = Field(None, min_length=1, max_length=4096)
    per_class: int | None = Field(None, ge=1, le=4096)
    n: int | None = Field(None, ge=1, le=4096)
    seed: int = Field(0, ge=0, lt=2**63)
    truncation: float | None = Field(
        None, gt=0, le=10, description="sample z from a normal truncated to [-t, t]"
    )
    format: SampleFormat = Field(
        "png_grid",
        description="png_grid: image/png grid (one row per class with per_class); png_zip: "
        "application/zip of {i:04d}_{class}.png; npy: uint8 (N,H,W[,C]) images or float32 (N,2) "
        'points; json: {"samples", "labels", "class_names", "shape"}',
    )

    @model_validator(mode="after")
    def _one_selector(self) -> Self:
        given = [k for k in ("labels", "class_names", "per_class") if getattr(self, k) is not None]
        if len(given) > 1:
            raise ValueError(f"give one of labels, class_names or per_class, not {given}")
        return self


class SamplesJson(BaseModel):
    samples: list[Any] = Field(description="uint8 images (N,H,W[,C]) or float (N,2) points")
    shape: list[int]
    labels: list[int] | None
    class_names: list[str] | None = Field(description="the class of each sample, or null")


# --- health ------------------------------------------------------------------------------------


class Ready(BaseModel):
    status: Literal["ready"]
    checks: dict[str, str]
