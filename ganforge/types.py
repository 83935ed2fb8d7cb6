"""The API's response bodies as the client reads them (pydantic).

They mirror ``api.schemas`` (``JobOut`` is :class:`Job`, ``ModelOut`` :class:`Model`, ...) without
importing it, so the SDK needs none of the service's packages; ``tests/test_sdk_types.py`` keeps
the field names equal. Unknown fields are kept (``extra="allow"``) and enums are plain strings, so
a newer server's additions do not break an older client.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Final

from pydantic import BaseModel, ConfigDict, Field

FINISHED_STATUSES: Final = frozenset({"succeeded", "failed", "cancelled"})


class Resource(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)


class Labelled(Resource):
    tags: list[str] = Field(default_factory=list)
    metadata: dict[str, str] = Field(default_factory=dict)


class Dataset(Labelled):
    """An uploaded dataset (``DatasetOut``)."""

    id: str
    name: str
    n_images: int
    image_shape: list[int]
    class_names: list[str] | None = None
    class_counts: list[int] | None = None
    input_shape: list[int] | None = None
    num_classes: int = 0
    size_bytes: int
    created_at: datetime


class BuiltinDataset(Resource):
    """A dataset every account can train on: ``{"dataset": {"builtin": name}}``."""

    name: str
    kind: str
    sample_shape: list[int]
    input_shape: list[int] | None = None
    n_images: int
    class_names: list[str]
    num_classes: int
    description: str


class Progress(Resource):
    step: int
    total: int
    fraction: float
    images_per_s: float | None = None
    eta_s: float | None = None


class MetricPoint(Resource):
    step: int
    value: float | None = None


class JobError(Resource):
    code: str | None = None
    message: str | None = None


class Webhook(Resource):
    """Where a job's notifications go (``WebhookOut``; the secret is never sent back)."""

    url: str
    events: list[str]
    signed: bool


class WebhookAttempt(Resource):
    at: datetime
    duration_ms: float
    status_code: int | None = None
    error: str | None = None


class WebhookDelivery(Resource):
    """One notification and its tries (``WebhookDeliveryOut``); ``payload`` is the body sent."""

    id: str
    event: str
    url: str
    status: str
    attempts: list[WebhookAttempt]
    next_attempt_at: datetime | None = None
    created_at: datetime
    delivered_at: datetime | None = None
    payload: dict[str, Any]


class StorageBytes(Resource):
    datasets: int
    samples: int
    checkpoints: int
    models: int
    total: int


class Usage(Resource):
    """``GET /v1/usage``: stored bytes by kind and the worker time the account's jobs took."""

    storage_bytes: StorageBytes
    storage_quota_bytes: int | None = None
    job_seconds: float


class Job(Labelled):
    """A training job (``JobOut``). ``status``: queued, running, paused, interrupted, then
    succeeded, failed or cancelled."""

    id: str
    name: str | None = None
    status: str
    phase: str | None = None
    spec: dict[str, Any]
    dataset_id: str | None = None
    progress: Progress
    latest_metrics: dict[str, MetricPoint] = Field(default_factory=dict)
    summary_metrics: dict[str, Any] | None = None
    error: JobError | None = None
    model_id: str | None = None
    attempt: int
    cancel_requested: bool = False
    pause_requested: bool = False
    continued_from: str | None = None
    webhook: Webhook | None = None
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    updated_at: datetime

    @property
    def finished(self) -> bool:
        return self.status in FINISHED_STATUSES


class Event(Resource):
    """A line of a job's event log (``EventOut``)."""

    seq: int
    step: int | None = None
    level: str
    code: str
    message: str
    created_at: datetime


class Sample(Resource):
    """A sample grid a job saved (``SampleOut``); ``url`` is its PNG's path."""

    step: int
    created_at: datetime
    url: str


class Checkpoint(Resource):
    step: int
    metrics: dict[str, float | None] | None = None
    created_at: datetime
    best: bool = False


class MetricSeries(Resource):
    """One page of ``GET /v1/jobs/{id}/metrics``: ``{"d_loss": [[step, value], ...]}``."""

    data: dict[str, list[list[int | float | None]]]
    has_more: bool
    last_step: int | None = None


class Model(Labelled):
    """A trained generator (``ModelOut``). ``image_shape`` is [H, W, C], or [2] for points."""

    id: str
    job_id: str
    name: str | None = None
    class_names: list[str] | None = None
    num_classes: int = 0
    image_shape: list[int]
    spec: dict[str, Any]
    summary_metrics: dict[str, Any] | None = None
    created_at: datetime


class ScoreSearch(Resource):
    """The latent search behind a reconstruction score (``SearchOut``)."""

    seed: int
    steps: int
    starts: int
    distance: str
    feature_weight: float


class Scores(Resource):
    """Anomaly scores of uploaded images (``ScoresOut``): ``scores[method]`` holds one value
    per image, in the upload's order; higher = more anomalous."""

    model_id: str
    count: int
    scores: dict[str, list[float]]
    labels: list[int] | None = None
    search: ScoreSearch | None = None


class StreamMessage(Resource):
    """A message of ``GET /v1/jobs/{id}/stream``: ``event`` (``data`` an :class:`Event`),
    ``progress`` (a :class:`Progress`), ``metrics`` (the newest point per name) or ``status``
    (``{"id", "status", "error", "model_id", ...}``)."""

    event: str
    data: Any
    id: str | None = None
