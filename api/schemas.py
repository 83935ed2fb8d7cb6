"""Response and request bodies (pydantic). The training spec itself is ``gan_engine.spec.Spec``.

Responses are read from ORM rows (``from_attributes``): routes return rows and FastAPI's
``response_model`` makes them these shapes. What a response derives (a job's progress and error, a
dataset's class count) is a ``computed_field`` here, from columns the response itself excludes.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Generic, Literal, TypeVar

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    computed_field,
    field_validator,
    model_validator,
)
from pydantic_core.core_schema import ValidationInfo

from store.labels import (
    MAX_METADATA_KEY_CHARS,
    MAX_METADATA_KEYS,
    MAX_METADATA_VALUE_CHARS,
    MAX_NAME_CHARS,
    MAX_TAG_CHARS,
    MAX_TAGS,
    TAG_PATTERN,
    Labels,
)
from store.models import (
    ACTIVE_STATUSES,
    CLAIMABLE_STATUSES,
    DeliveryStatus,
    EventLevel,
    JobPhase,
    JobStatus,
    WebhookEvent,
)
from store.webhooks import MAX_SECRET_CHARS, url_problem

T = TypeVar("T")
MAX_LABEL = 2**31 - 1


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


def error(description: str) -> dict[str, Any]:
    return {"model": ErrorBody, "description": description}


# What every /v1 operation can answer besides its success; routes add their own (409, 415, 429).
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: error("`invalid_json`: a body that is not strict JSON (a duplicate key, NaN)"),
    401: error("no API key, or an invalid or revoked one"),
    404: error("no such object in this account"),
    413: error("the body is larger than MAX_JSON_BODY_BYTES (uploads: MAX_UPLOAD_BYTES)"),
    422: error("invalid request; `param` names the field"),
    431: error("too many or too large request headers"),
    503: error("the database or object storage is unavailable; retry after `Retry-After`"),
}


# --- datasets ----------------------------------------------------------------------------------


class FromRow(BaseModel):
    model_config = ConfigDict(from_attributes=True)


# --- names, tags and metadata (store.labels) ----------------------------------------------------

Name = Annotated[
    str, StringConstraints(min_length=1, max_length=MAX_NAME_CHARS, pattern=r"^[^\x00-\x1f\x7f]+$")
]
Tag = Annotated[str, StringConstraints(min_length=1, max_length=MAX_TAG_CHARS, pattern=TAG_PATTERN)]
MetadataKey = Annotated[
    str, StringConstraints(min_length=1, max_length=MAX_METADATA_KEY_CHARS, pattern=TAG_PATTERN)
]
MetadataValue = Annotated[str, StringConstraints(max_length=MAX_METADATA_VALUE_CHARS)]
Tags = Annotated[list[Tag], Field(max_length=MAX_TAGS)]


def _unique(tags: list[str]) -> list[str]:
    return list(dict.fromkeys(tags))


class LabelsIn(BaseModel):
    """A name, tags (``?tag=`` filters lists by them) and a small string-to-string metadata
    dict, given when an object is created."""

    model_config = ConfigDict(extra="forbid")

    name: Name | None = None
    tags: Tags = Field(default_factory=list)
    metadata: dict[MetadataKey, MetadataValue] = Field(
        default_factory=dict, max_length=MAX_METADATA_KEYS
    )

    _tags_once = field_validator("tags")(_unique)

    def to_store(self) -> Labels:
        return Labels(name=self.name, tags=tuple(self.tags), metadata=dict(self.metadata))


# --- webhooks (store.webhooks) ------------------------------------------------------------------


class WebhookIn(BaseModel):
    """Where a job's notifications go. Without a secret they are sent unsigned."""

    model_config = ConfigDict(extra="forbid")

    url: str = Field(description="http(s); no credentials in it; public addresses unless allowed")
    events: list[WebhookEvent] = Field(
        default_factory=lambda: list(WebhookEvent),
        min_length=1,
        description="which to send: started, progress, warning, completed (default: all)",
    )
    secret: str | None = Field(
        None,
        min_length=16,
        max_length=MAX_SECRET_CHARS,
        description="signs each body (HMAC-SHA256, header Ganforge-Signature); never shown again",
    )

    @field_validator("url")
    @classmethod
    def _url(cls, url: str) -> str:
        problem = url_problem(url)
        if problem:
            raise ValueError(f"a webhook URL must be {problem}")
        return url

    _events_once = field_validator("events")(_unique)


class WebhookOut(BaseModel):
    url: str
    events: list[WebhookEvent]
    signed: bool = Field(description="its deliveries carry Ganforge-Signature")

    @model_validator(mode="before")
    @classmethod
    def _without_secret(cls, stored: Any) -> Any:
        if isinstance(stored, dict) and "signed" not in stored:
            return {**stored, "signed": bool(stored.get("secret"))}
        return stored


class JobFieldsIn(LabelsIn):
    """What a submission may carry beside the training spec: labels and a webhook."""

    webhook: WebhookIn | None = None


class WebhookAttemptOut(BaseModel):
    at: datetime
    duration_ms: float
    status_code: int | None = Field(description="the receiver's answer; null when none came")
    error: str | None


class WebhookDeliveryOut(FromRow):
    id: str = Field(description="the body's id too: receivers can drop a delivery seen twice")
    event: WebhookEvent
    url: str
    status: DeliveryStatus
    attempts: list[WebhookAttemptOut]
    next_attempt_at: datetime | None
    created_at: datetime
    delivered_at: datetime | None
    payload: dict[str, Any] = Field(description="the JSON body sent")


class LabelsPatch(BaseModel):
    """``PATCH``: the fields given change. ``name`` null clears it; ``tags`` replaces the list;
    ``metadata`` merges key by key, a null value removing its key."""

    model_config = ConfigDict(extra="forbid")

    name: Name | None = None
    tags: Tags | None = None
    metadata: dict[MetadataKey, MetadataValue | None] | None = Field(
        None, max_length=MAX_METADATA_KEYS
    )

    _tags_once = field_validator("tags")(lambda tags: None if tags is None else _unique(tags))


class LabelsOut(BaseModel):
    tags: list[str]
    metadata: dict[str, str] = Field(validation_alias=AliasChoices("metadata_", "metadata"))


def orm_attribute(model: type[BaseModel], field: str) -> str:
    """The ORM attribute a response field reads (its first validation alias, else its name)."""
    alias = model.model_fields[field].validation_alias
    if isinstance(alias, AliasChoices):
        first = alias.choices[0]
        return first if isinstance(first, str) else field
    return alias if isinstance(alias, str) else field


class DatasetOut(LabelsOut, FromRow):
    """An uploaded dataset: one validated pack in object storage."""

    id: str
    name: str
    n_images: int
    image_shape: list[int] = Field(description="[height, width, channels]")
    class_names: list[str] | None = Field(description="null when the images are unlabelled")
    size_bytes: int = Field(description="size of the stored pack")
    class_counts: list[int] | None = Field(
        None, description="images per class, in class_names order; null when unlabelled"
    )
    input_shape: list[int] | None = Field(
        None,
        description="paired data (inputs -> targets, for task 'translation'): the inputs' "
        "[height, width, channels], image_shape being the targets'; null for plain images",
    )
    created_at: datetime

    @computed_field  # type: ignore[prop-decorator]
    @property
    def num_classes(self) -> int:
        return len(self.class_names or [])


class BuiltinDatasetOut(BaseModel):
    """A dataset every account can train on: ``{"dataset": {"builtin": name}}``."""

    name: str
    kind: Literal["image", "points", "paired"]
    sample_shape: list[int] = Field(
        description="[height, width, channels] (paired: the targets'), or [2] for points"
    )
    input_shape: list[int] | None = Field(
        None, description="paired data (task 'translation'): the inputs' [height, width, channels]"
    )
    n_images: int = Field(description="samples in the training split")
    class_names: list[str]
    num_classes: int
    description: str


class BuiltinDatasetDetail(BuiltinDatasetOut):
    """A builtin dataset as read from its files (GANFORGE_DATA_DIR for MNIST and Fashion-MNIST)."""

    split: Literal["train", "test"] = Field(description="the split counted and previewed")
    class_counts: list[int] = Field(description="samples per class, in class_names order")


# --- presets -----------------------------------------------------------------------------------


class PresetOut(BaseModel):
    """A named set of spec fields (``gan_engine/presets/NAME.yaml``): ``{"preset": name}``."""

    name: str
    description: str = Field(description="the paper and setting it follows")
    fields: dict[str, Any] = Field(description="the spec fields it sets; the spec's own win")


# --- jobs --------------------------------------------------------------------------------------


class Progress(BaseModel):
    step: int
    total: int
    fraction: float
    images_per_s: float | None
    eta_s: float | None = Field(
        description="seconds its worker expected left at the job's updated_at, the remaining "
        "evaluations and the export included (running jobs)"
    )


class MetricPoint(BaseModel):
    step: int
    value: float | None = Field(description="null for NaN/inf")


class JobErrorOut(BaseModel):
    code: str | None
    message: str | None


class JobOut(LabelsOut, FromRow):
    id: str
    name: str | None
    status: JobStatus
    phase: JobPhase | None = Field(
        description="queued, training, evaluating or exporting; null once the job is finished"
    )
    spec: dict[str, Any] = Field(
        description="the resolved spec: every default filled in, every auto decided"
    )
    dataset_id: str | None
    latest_metrics: dict[str, MetricPoint] = Field(description="per name, its newest point")
    summary_metrics: dict[str, Any] | None = Field(description="final metrics of a finished run")
    model_id: str | None
    attempt: int = Field(description="1 for the first run; resumptions after a lost worker add 1")
    cancel_requested: bool
    pause_requested: bool = Field(description="its worker checkpoints and pauses at the next beat")
    continued_from: str | None = Field(
        description="the job whose newest checkpoint this one started from (POST .../continue)"
    )
    webhook: WebhookOut | None = Field(description="where its notifications go (no secret)")
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    updated_at: datetime
    # columns the response shows only through ``progress`` and ``error``
    step: int = Field(exclude=True)
    total_steps: int = Field(exclude=True)
    images_per_s: float | None = Field(exclude=True)
    eta_s: float | None = Field(exclude=True)
    error_code: str | None = Field(exclude=True)
    error_message: str | None = Field(exclude=True)

    @field_validator("phase", mode="after")
    @classmethod
    def _phase_of_status(cls, phase: JobPhase | None, info: ValidationInfo) -> JobPhase | None:
        status = info.data.get("status")
        if status in CLAIMABLE_STATUSES:
            return JobPhase.QUEUED
        if status not in ACTIVE_STATUSES:
            return None
        return phase or JobPhase.TRAINING

    @computed_field  # type: ignore[prop-decorator]
    @property
    def progress(self) -> Progress:
        total = self.total_steps
        return Progress(
            step=self.step,
            total=total,
            fraction=min(1.0, self.step / total) if total else 0.0,
            images_per_s=self.images_per_s,
            eta_s=self.eta_s if self.status == JobStatus.RUNNING else None,
        )

    @computed_field  # type: ignore[prop-decorator]
    @property
    def error(self) -> JobErrorOut | None:
        if not (self.error_code or self.error_message):
            return None
        return JobErrorOut(code=self.error_code, message=self.error_message)


class ContinueRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    steps: Annotated[int, Field(strict=True, ge=1, le=2**31 - 1)] = Field(
        description="the continued run's total steps: more than the source's newest checkpoint"
    )


class EventOut(FromRow):
    seq: int = Field(description="1, 2, 3... per job: the cursor of this list")
    step: int | None
    level: EventLevel
    code: str
    message: str
    created_at: datetime


class MetricSeries(BaseModel):
    """Time series grouped by name: ``{"d_loss": [[step, value], ...], ...}``, steps ascending."""

    # [step, value] pairs; a fixed-length list rather than a tuple, whose OpenAPI 3.1
    # ``prefixItems`` some clients (schemathesis among them) cannot read
    data: dict[str, list[Annotated[list[int | float | None], Field(min_length=2, max_length=2)]]]
    has_more: bool = Field(description="more steps follow: ask again with after_step=last_step")
    last_step: int | None = Field(description="the newest step in this answer")


class SampleOut(FromRow):
    job_id: str = Field(exclude=True)
    step: int
    created_at: datetime

    @computed_field(description="the PNG grid (one row per class for conditional models)")  # type: ignore[prop-decorator]
    @property
    def url(self) -> str:
        return f"/v1/jobs/{self.job_id}/samples/{self.step}.png"


class CheckpointOut(FromRow):
    """A kept checkpoint: a job keeps its newest ``KEEP_CHECKPOINTS`` and its best one."""

    step: int
    metrics: dict[str, float | None] | None
    created_at: datetime
    best: bool = Field(
        False,
        description="the checkpoint whose own evaluation scored best (lowest FID; reverse KL "
        "on 2-D data), kept whatever its age",
    )


# --- models ------------------------------------------------------------------------------------


class ModelOut(LabelsOut, FromRow):
    id: str
    job_id: str
    name: str | None = Field(description="its job's name when it was trained; PATCH changes it")
    class_names: list[str] | None = Field(description="null for unconditional generators")
    image_shape: list[int] = Field(description="[height, width, channels], or [2] for points")
    spec: dict[str, Any]
    summary_metrics: dict[str, Any] | None
    created_at: datetime

    @computed_field  # type: ignore[prop-decorator]
    @property
    def num_classes(self) -> int:
        return len(self.class_names or [])


SampleFormat = Literal["png_grid", "png_zip", "npy", "json"]


StrictInt = Annotated[int, Field(strict=True)]


class SampleRequest(BaseModel):
    """What to generate. Give at most one of ``labels``, ``class_names`` or ``per_class``; with
    none, ``n`` samples (default 16) cycle through the classes of a conditional model. Labels or
    class names with ``n`` share it equally, in blocks: ``{"class_names": ["Sneaker", "Bag"],
    "n": 4}`` is two sneakers then two bags (``n`` a multiple of how many were given). Same seed
    and labels, same bytes."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    labels: list[Annotated[StrictInt, Field(ge=0, le=MAX_LABEL)]] | None = Field(
        None, min_length=1, max_length=4096
    )
    class_names: list[Annotated[str, Field(max_length=200)]] | None = Field(
        None, min_length=1, max_length=4096
    )
    per_class: StrictInt | None = Field(None, ge=1, le=4096)
    n: StrictInt | None = Field(None, ge=1, le=4096)
    seed: StrictInt = Field(0, ge=0, lt=2**63)
    truncation: Annotated[float, Field(strict=True)] | None = Field(
        None, gt=0, le=10, description="sample z from a normal truncated to [-t, t]"
    )
    format: SampleFormat = Field(
        "png_grid",
        description="png_grid: image/png grid (one row per class with per_class); png_zip: "
        "application/zip of {i:04d}_{class}.png; npy: uint8 (N,H,W[,C]) images or float32 (N,2) "
        'points; json: {"samples", "labels", "class_names", "shape"}',
    )


class SamplesJson(BaseModel):
    samples: list[Any] = Field(description="uint8 images (N,H,W[,C]) or float (N,2) points")
    shape: list[int]
    labels: list[int] | None
    class_names: list[str] | None = Field(description="the class of each sample, or null")


InterpolationFormat = Literal["png_strip", "gif", "npy"]
ClassRef = (
    Annotated[StrictInt, Field(ge=0, le=MAX_LABEL)]
    | Annotated[str, Field(min_length=1, max_length=200)]
)


class InterpolationRequest(BaseModel):
    """A latent walk of ``frames`` samples from (``from_seed``, ``from_class``) to (``to_seed``,
    ``to_class``): give ``to_seed`` (slerp between the two seeds' z), ``to_class`` (the class
    embedding moves linearly at fixed z; conditional models) or both. Classes by index (a JSON
    number) or name (a string); a conditional model's ``from_class`` defaults to 0 and
    ``to_class`` to ``from_class``. Frame 0 is the sample ``{"labels": [from_class], "n": 1,
    "seed": from_seed}`` gives (the same z and class). Same request, same bytes."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    from_seed: StrictInt = Field(0, ge=0, lt=2**63)
    to_seed: StrictInt | None = Field(None, ge=0, lt=2**63)
    from_class: ClassRef | None = None
    to_class: ClassRef | None = None
    frames: StrictInt = Field(8, ge=2, le=64)
    truncation: Annotated[float, Field(strict=True)] | None = Field(
        None, gt=0, le=10, description="z from a normal truncated to [-t, t]"
    )
    format: InterpolationFormat = Field(
        "png_strip",
        description="png_strip: image/png, the frames in one row; gif: image/gif, played there "
        "and back, looping; npy: uint8 (F,H,W[,C]) images or float32 (F,2) points (2-D point "
        "models: npy only)",
    )


class SyntheticDatasetRequest(LabelsIn):
    """Materialise ``per_class`` samples of every class of a conditional image model as a new
    dataset of this account: the images ``POST /v1/models/{id}/samples`` gives for the same
    ``per_class``, ``seed`` and ``truncation``. ``name`` defaults to ``{model id}-synthetic``;
    ``metadata`` gains ``source_model``, ``seed`` and ``truncation`` (yours win)."""

    per_class: StrictInt = Field(ge=1, le=100_000)
    seed: StrictInt = Field(0, ge=0, lt=2**63)
    truncation: Annotated[float, Field(strict=True)] | None = Field(
        None, gt=0, le=10, description="z from a normal truncated to [-t, t]"
    )


# --- health ------------------------------------------------------------------------------------


class Ready(BaseModel):
    status: Literal["ready"]
    checks: dict[str, str]


# --- usage ---------------------------------------------------------------------------------------


class StorageBytes(BaseModel):
    datasets: int = Field(description="uploaded datasets, as stored packs")
    samples: int = Field(description="jobs' sample grids")
    checkpoints: int = Field(description="jobs' kept checkpoints")
    models: int = Field(description="trained generators' artifacts")
    total: int


class UsageOut(BaseModel):
    storage_bytes: StorageBytes
    storage_quota_bytes: int | None = Field(
        description="past it, uploads, submissions and continuations answer 429 quota_exceeded; "
        "null: no quota"
    )
    job_seconds: float = Field(description="seconds this account's jobs have held a worker")


# --- anomaly scores ------------------------------------------------------------------------------

ScoreMethodChoice = Literal["discriminator", "reconstruction", "both"]


class ScoreRequest(BaseModel):
    """The form fields beside the uploaded images of ``POST /v1/models/{id}/scores``."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    method: ScoreMethodChoice = Field(
        "both",
        description="discriminator: -D(x), needs a model that keeps its discriminator (trained "
        "since scores exist); reconstruction: the AnoGAN latent-search residual; both",
    )
    seed: int = Field(0, ge=0, lt=2**63, description="the latent search's starting points")
    steps: int = Field(100, ge=1, le=500, description="Adam steps of the latent search")
    starts: int = Field(4, ge=1, le=16, description="starting latents per image; the best wins")
    distance: Literal["l1", "l2"] = Field("l1", description="the reconstruction's pixel residual")
    feature_weight: float = Field(
        0.0,
        ge=0,
        le=100,
        description="adds this times the L1 distance of D's penultimate features (AnoGAN's "
        "discrimination loss); > 0 needs the discriminator",
    )


class SearchOut(BaseModel):
    seed: int
    steps: int
    starts: int
    distance: str
    feature_weight: float


class ScoresOut(BaseModel):
    model_id: str
    count: int = Field(description="images scored, in the upload's order")
    scores: dict[str, list[float]] = Field(
        description="per method asked for, one score per image; higher = more anomalous"
    )
    labels: list[int] | None = Field(
        description="the class each image was scored as, when the model is conditional and the "
        "upload gave labels; null: the best class per image"
    )
    search: SearchOut | None = Field(description="the reconstruction's latent search, if run")
