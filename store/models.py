"""Tables (SQLAlchemy 2 typed ORM). The schema itself is created by ``migrations/``, not here.

Ids are strings: a prefix and a random URL-safe suffix (``job_3q7...``). Timestamps are
timezone-aware UTC on both dialects (SQLite stores them naive; ``UTCDateTime`` puts UTC back).
"""

from __future__ import annotations

import math
import secrets
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, ClassVar, Final

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    false,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator


class JobStatus(StrEnum):
    """A job's status (DESIGN.md §4). The members are strings: ``JobStatus.QUEUED == "queued"``.

    ``interrupted``: its worker was lost or shut down; the job is back in the queue and resumes
    from its newest checkpoint. ``paused``: stopped at a checkpoint on request, holding no
    worker, until it is resumed (queued again). The groups below and the table's CHECK
    constraint derive from this enum; nothing else in store/ or worker/ spells the names out."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    INTERRUPTED = "interrupted"
    PAUSED = "paused"


JOB_STATUSES: Final = tuple(JobStatus)
# A worker may take these (a fresh job, or one handed back to the queue).
CLAIMABLE_STATUSES: Final = (JobStatus.QUEUED, JobStatus.INTERRUPTED)
# Not finished yet: they count against a tenant's concurrent-job limit.
ACTIVE_STATUSES: Final = tuple(
    s for s in JobStatus if s in CLAIMABLE_STATUSES or s is JobStatus.RUNNING
)
# Final: nothing changes a finished job's status again.
FINISHED_STATUSES: Final = (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED)
# Not finished: they still need their dataset (a paused job resumes on it).
UNFINISHED_STATUSES: Final = tuple(s for s in JobStatus if s not in FINISHED_STATUSES)


class JobPhase(StrEnum):
    """What a job is doing: waiting for a worker, then (running) training, evaluating (the
    evaluator classifier's training and quality metrics) or exporting the generator. A finished
    job has no phase."""

    QUEUED = "queued"
    TRAINING = "training"
    EVALUATING = "evaluating"
    EXPORTING = "exporting"


class EventLevel(StrEnum):
    """How much a job event matters (the engine's ``gan_engine.events.Level``, which the store
    does not import; a test keeps the two equal)."""

    INFO = "info"
    WARNING = "warning"
    ERROR = "error"


EVENT_LEVELS: Final = tuple(EventLevel)


class WebhookEvent(StrEnum):
    """What a job's webhook can be told (the delivery's ``type`` is ``job.<event>``)."""

    STARTED = "started"  # a worker claimed it (again after a lost worker or a resume)
    PROGRESS = "progress"  # at most every WEBHOOK_PROGRESS_INTERVAL_S while it trains
    WARNING = "warning"  # a warning or error event: a diagnostic, a lost worker
    COMPLETED = "completed"  # succeeded, failed or cancelled


class DeliveryStatus(StrEnum):
    PENDING = "pending"  # a try is due or scheduled
    DELIVERED = "delivered"  # the receiver answered 2xx
    FAILED = "failed"  # every try failed, or the address was refused


WEBHOOK_EVENTS: Final = tuple(WebhookEvent)
DELIVERY_STATUSES: Final = tuple(DeliveryStatus)


def _in(column: str, values: tuple[str, ...]) -> str:
    """``column IN ('a', 'b')``: the text of a CHECK constraint (the migrations hold the same)."""
    return f"{column} IN ({', '.join(repr(str(value)) for value in values)})"


ID_BYTES = 12  # 16 URL-safe characters


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_urlsafe(ID_BYTES)}"


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC datetime on every dialect."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: use timezone-aware UTC")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


JSONType = JSON().with_variant(JSONB(), "postgresql")
# SQLite autoincrements only an INTEGER PRIMARY KEY.
BigIntPK = BigInteger().with_variant(Integer(), "sqlite")


class Base(DeclarativeBase):
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        datetime: UTCDateTime,
        dict[str, Any]: JSONType,
    }


class Labelled:
    """A user's tags and metadata on an object (``store.labels``). The ORM attribute is
    ``metadata_``: ``metadata`` is SQLAlchemy's own."""

    tags: Mapped[list[str]] = mapped_column(JSONType, default=list, server_default="[]")
    metadata_: Mapped[dict[str, str]] = mapped_column(
        "metadata", JSONType, default=dict, server_default="{}"
    )


def _created() -> Mapped[datetime]:
    return mapped_column(UTCDateTime, default=utcnow, nullable=False)


class Tenant(Base):
    __tablename__ = "tenants"

    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("ten"))
    name: Mapped[str] = mapped_column(String(200))
    webhook: Mapped[dict[str, Any] | None] = mapped_column(
        doc="the webhook of its submissions that name none (PUT /v1/webhook)"
    )
    created_at: Mapped[datetime] = _created()


class ApiKey(Base):
    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("key"))
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    name: Mapped[str | None] = mapped_column(String(200))
    prefix: Mapped[str] = mapped_column(String(16), doc="the key's first characters, for display")
    key_hash: Mapped[str] = mapped_column(
        String(64), unique=True, index=True, doc="SHA-256 hex of the key"
    )
    created_at: Mapped[datetime] = _created()
    revoked_at: Mapped[datetime | None]


class Dataset(Labelled, Base):
    __tablename__ = "datasets"
    __table_args__ = (Index("ix_datasets_tenant_created", "tenant_id", "created_at"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("ds"))
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(200))
    storage_key: Mapped[str] = mapped_column(String(500))
    n_images: Mapped[int] = mapped_column(Integer)
    image_shape: Mapped[list[int]] = mapped_column(JSONType, doc="[H, W, C]")
    class_names: Mapped[list[str] | None] = mapped_column(JSONType)
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    class_counts: Mapped[list[int] | None] = mapped_column(
        JSONType, doc="images per class; null when unlabelled or uploaded before 0007"
    )
    input_shape: Mapped[list[int] | None] = mapped_column(
        JSONType, doc="paired data (task 'translation'): the inputs' [H, W, C]; null otherwise"
    )
    created_at: Mapped[datetime] = _created()


class Job(Labelled, Base):
    __tablename__ = "jobs"
    __table_args__ = (
        UniqueConstraint("tenant_id", "idempotency_key", name="uq_jobs_tenant_idempotency_key"),
        CheckConstraint(_in("status", JOB_STATUSES), name="ck_jobs_status"),
        Index("ix_jobs_tenant_created", "tenant_id", "created_at"),
        Index("ix_jobs_tenant_status", "tenant_id", "status"),
        Index("ix_jobs_status_lease", "status", "lease_expires_at"),
        Index("ix_jobs_status_enqueued", "status", "enqueued_at"),
        Index("ix_jobs_queue_status_created", "queue", "status", "created_at"),
        Index("ix_jobs_queue_tenant_status", "queue", "tenant_id", "status"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("job"))
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    spec: Mapped[dict[str, Any]] = mapped_column(doc="normalised training spec")
    name: Mapped[str | None] = mapped_column(String(200))
    webhook: Mapped[dict[str, Any] | None] = mapped_column(
        doc='{"url", "events", "secret"}: where its deliveries go (store.webhooks)'
    )
    dataset_id: Mapped[str | None] = mapped_column(
        String(40), index=True, doc="the uploaded dataset the spec names (no FK: builtins)"
    )
    status: Mapped[str] = mapped_column(String(16), default=JobStatus.QUEUED)
    queue: Mapped[str] = mapped_column(
        String(64),
        server_default="train",
        doc="the training queue its spec routes it to (store.queue.train_queue)",
    )
    step: Mapped[int] = mapped_column(Integer, default=0)
    total_steps: Mapped[int] = mapped_column(Integer)
    images_per_s: Mapped[float | None] = mapped_column(Float)
    phase: Mapped[str | None] = mapped_column(
        String(16), doc="a running job's JobPhase, as its worker last wrote it"
    )
    eta_s: Mapped[float | None] = mapped_column(
        Float, doc="seconds its worker expected left, evaluation included, at updated_at"
    )
    error_code: Mapped[str | None] = mapped_column(String(64))
    error_message: Mapped[str | None] = mapped_column(Text)
    attempt: Mapped[int] = mapped_column(Integer, default=0, doc="claims so far")
    workers_lost: Mapped[int] = mapped_column(
        Integer,
        default=0,
        server_default="0",
        doc="attempts whose worker was lost (lease expired); MAX_ATTEMPTS caps it",
    )
    worker_id: Mapped[str | None] = mapped_column(String(200))
    lease_expires_at: Mapped[datetime | None]
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    pause_requested: Mapped[bool] = mapped_column(
        Boolean, default=False, server_default=false(), doc="its worker pauses at the next beat"
    )
    continued_from: Mapped[str | None] = mapped_column(
        String(40),
        doc="the job whose newest checkpoint this one started from (no FK: kept "
        "when that job is deleted)",
    )
    idempotency_key: Mapped[str | None] = mapped_column(String(255))
    model_id: Mapped[str | None] = mapped_column(String(40), doc="set when the job succeeds")
    latest_metrics: Mapped[dict[str, Any]] = mapped_column(
        default=dict, doc='{name: {"step": int, "value": float | None}}'
    )
    summary_metrics: Mapped[dict[str, Any] | None]
    event_seq: Mapped[int] = mapped_column(Integer, default=0, doc="last job_events.seq")
    created_at: Mapped[datetime] = _created()
    enqueued_at: Mapped[datetime] = _created()
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    updated_at: Mapped[datetime] = _created()
    running_since: Mapped[datetime | None] = mapped_column(doc="its current claim's start")
    run_seconds: Mapped[float] = mapped_column(
        Float, default=0.0, server_default="0", doc="seconds it held a worker, before this claim"
    )

    @property
    def fraction(self) -> float:
        return min(1.0, self.step / self.total_steps) if self.total_steps else 0.0


class JobEvent(Base):
    __tablename__ = "job_events"
    __table_args__ = (
        UniqueConstraint("job_id", "seq", name="uq_job_events_job_seq"),
        CheckConstraint(_in("level", EVENT_LEVELS), name="ck_job_events_level"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    seq: Mapped[int] = mapped_column(Integer)
    step: Mapped[int | None] = mapped_column(Integer)
    level: Mapped[str] = mapped_column(String(16))
    code: Mapped[str] = mapped_column(String(64))
    message: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = _created()


class Metric(Base):
    __tablename__ = "metrics"
    __table_args__ = (UniqueConstraint("job_id", "name", "step", name="uq_metrics_job_name_step"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(64))
    step: Mapped[int] = mapped_column(Integer)
    value: Mapped[float | None] = mapped_column(Float, doc="NULL for NaN/inf")


class Sample(Base):
    __tablename__ = "samples"
    __table_args__ = (UniqueConstraint("job_id", "step", name="uq_samples_job_step"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    step: Mapped[int] = mapped_column(Integer)
    storage_key: Mapped[str] = mapped_column(String(500))
    size_bytes: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = _created()


class Checkpoint(Base):
    __tablename__ = "checkpoints"
    __table_args__ = (UniqueConstraint("job_id", "step", name="uq_checkpoints_job_step"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    step: Mapped[int] = mapped_column(Integer)
    storage_key: Mapped[str] = mapped_column(String(500))
    size_bytes: Mapped[int | None] = mapped_column(BigInteger)
    metrics: Mapped[dict[str, Any] | None]
    created_at: Mapped[datetime] = _created()


class TrainedModel(Labelled, Base):
    """A succeeded job's generator (table ``models``)."""

    __tablename__ = "models"
    __table_args__ = (Index("ix_models_tenant_created", "tenant_id", "created_at"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("mdl"))
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), unique=True)
    name: Mapped[str | None] = mapped_column(String(200), doc="its job's name at the start")
    spec: Mapped[dict[str, Any]]
    class_names: Mapped[list[str] | None] = mapped_column(JSONType)
    image_shape: Mapped[list[int]] = mapped_column(JSONType)
    summary_metrics: Mapped[dict[str, Any] | None]
    storage_prefix: Mapped[str] = mapped_column(String(500))
    size_bytes: Mapped[int | None] = mapped_column(BigInteger, doc="its artifact's objects")
    created_at: Mapped[datetime] = _created()


class WebhookDelivery(Base):
    """One notification to a job's webhook and every try to deliver it (``attempts``: a list of
    ``{"at", "duration_ms", "status_code", "error"}``, at most WEBHOOK_MAX_ATTEMPTS long)."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        CheckConstraint(_in("event", WEBHOOK_EVENTS), name="ck_webhook_deliveries_event"),
        CheckConstraint(_in("status", DELIVERY_STATUSES), name="ck_webhook_deliveries_status"),
        Index("ix_webhook_deliveries_job_created", "job_id", "created_at"),
        Index("ix_webhook_deliveries_status_next", "status", "next_attempt_at"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("whd"))
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    event: Mapped[str] = mapped_column(String(16))
    url: Mapped[str] = mapped_column(Text)
    payload: Mapped[dict[str, Any]] = mapped_column(doc="the body, signed as sent")
    status: Mapped[str] = mapped_column(String(16), default=DeliveryStatus.PENDING)
    attempts: Mapped[list[dict[str, Any]]] = mapped_column(JSONType, default=list)
    next_attempt_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = _created()
    delivered_at: Mapped[datetime | None]


def finite_or_none(value: float) -> float | None:
    """JSON and SQLite cannot hold NaN/inf; they are stored as NULL."""
    value = float(value)
    return value if math.isfinite(value) else None
