"""Jobs: submission (validation, idempotency, enqueue), reading, cancel and what a run reports."""

from __future__ import annotations

import functools
import hashlib
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import anyio
from celery import Celery
from pydantic import ValidationError
from sqlalchemy import bindparam, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.orm import Session

from api.config import ApiSettings
from api.schemas import (
    CheckpointOut,
    JobFieldsIn,
    JobOut,
    MetricSeries,
    orm_attribute,
)
from api.services.datasets import BUILTINS_BY_NAME
from api.services.pagination import ascending_page
from api.services.tenancy import get_owned, list_owned
from api.services.usage import check_quota, check_quota_async
from api.services.webhooks import submission_webhook
from gan_engine.data.builtins import MAPPED_FROM_BYTES
from gan_engine.evaluation import BEST_CHECKPOINT_METRICS
from gan_engine.memory import estimate_training_memory, format_bytes
from gan_engine.spec import Spec, SpecError, parse_spec, problems_of
from store import jobs as store_jobs
from store.errors import Conflict, InvalidRequest, NotFound
from store.models import (
    ACTIVE_STATUSES,
    FINISHED_STATUSES,
    Checkpoint,
    Dataset,
    Job,
    JobEvent,
    JobStatus,
    Metric,
    Sample,
    TrainedModel,
)
from store.queue import enqueue_train, gpu_queue, train_queue
from store.reads import AsyncReads
from store.storage import (
    ObjectStorage,
    checkpoint_key,
    copy_object,
    delete_objects,
    job_prefix,
)

log = logging.getLogger("api.jobs")

MAX_IDEMPOTENCY_KEY_CHARS = 255


# --- submission --------------------------------------------------------------------------------


def split_job_fields(body: Any) -> tuple[Any, JobFieldsIn]:
    """The job's own fields (``JobFieldsIn``) taken out of a submitted body, and the spec left."""
    if not isinstance(body, dict):
        return body, JobFieldsIn()
    own = {name: body[name] for name in JobFieldsIn.model_fields if name in body}
    try:
        labels = JobFieldsIn.model_validate(own)
    except ValidationError as error:
        raise SpecError(problems=problems_of(error), total=error.error_count()) from None
    return {k: v for k, v in body.items() if k not in own}, labels


async def validate_spec(
    connection: AsyncConnection, *, tenant_id: str, body: Any, settings: ApiSettings
) -> Spec:
    """The resolved spec, checked against this service: its limits, the tenant's datasets, and
    the memory its training would take. An unset image size is resolved from the dataset."""
    if not isinstance(body, dict):
        raise SpecError("send the training spec as a JSON object (Content-Type: application/json)")
    spec = parse_spec(body)
    if spec.training.steps > settings.max_steps:
        raise SpecError(
            f"at most {settings.max_steps:,} on this service, got {spec.training.steps:,}",
            param="training.steps",
        )
    if spec.dataset.path is not None:
        raise SpecError(
            "local files are for the gan_engine CLI; upload the pack (POST /v1/datasets) and "
            'name it with {"id": ...}',
            param="dataset.path",
        )
    data = await training_data_facts(connection, tenant_id=tenant_id, spec=spec)
    if spec.model.conditioning != "none" and not data.num_classes:
        raise SpecError(
            f"'{spec.model.conditioning}' needs a labelled dataset and {spec.dataset.id} has no "
            "labels; use conditioning 'none' or upload labels",
            param="model.conditioning",
        )
    check_subset(spec, data)
    spec = spec.fitted_to(data.height, data.width) if data.height else spec
    check_memory(spec, data, budget_bytes=settings.max_job_memory_bytes)
    check_gpu_pool(spec, gpu_pools=settings.gpu_pools)
    return spec


def check_gpu_pool(spec: Spec, *, gpu_pools: Sequence[int] | None) -> None:
    """Refuse a job routed to a GPU pool this service does not run (``GPU_POOLS``; unset: any
    job is accepted, and waits for its pool)."""
    if gpu_pools is None:
        return
    devices = spec.training.devices
    if train_queue(spec.to_dict()) != gpu_queue(devices) or devices in gpu_pools:
        return
    if not gpu_pools:
        raise SpecError(
            "this service runs no GPU workers; use training.device 'cpu' or 'auto'",
            param="training.device",
        )
    sizes = ", ".join(str(n) for n in sorted(gpu_pools))
    raise SpecError(
        f"no worker pool here has {devices} GPUs (its pools: {sizes} GPUs a worker); ask for one "
        "of those counts",
        param="training.devices",
    )


def check_subset(spec: Spec, data: DataFacts) -> None:
    """``dataset.subset`` needs labels, and no more images than there are (the engine checks
    each class's count when it loads the data)."""
    subset = spec.dataset.subset
    if subset is None:
        return
    if not data.num_classes:
        raise SpecError(
            f"dataset.subset picks images per class, and {spec.dataset.id} has no labels",
            param="dataset.subset",
        )
    wanted = subset.per_class * data.num_classes
    if wanted > data.num_samples:
        raise SpecError(
            f"{subset.per_class:,} per class of {data.num_classes} classes is {wanted:,} images; "
            f"the dataset has {data.num_samples:,}",
            param="dataset.subset.per_class",
        )


@dataclass(frozen=True)
class DataFacts:
    """What validation needs to know of a spec's training data, without loading it."""

    num_samples: int
    height: int  # 0 for 2-D points
    width: int
    channels: int
    num_classes: int
    input_values: int = 0  # a paired dataset's values per input (H' x W' x C'); 0 when unpaired

    def sample_shape(self, image_size: int | None) -> tuple[int, ...]:
        return (2,) if not self.height else (self.channels, image_size or 0, image_size or 0)

    @property
    def mapped(self) -> bool:
        """Whether the worker memory-maps these images (a paired dataset's inputs and targets)
        rather than loading them: the rule of ``load_pack_dataset`` for the uncompressed packs
        uploads are stored as."""
        values = self.height * self.width * self.channels + self.input_values
        return self.num_samples * values > MAPPED_FROM_BYTES


async def training_data_facts(
    connection: AsyncConnection, *, tenant_id: str, spec: Spec
) -> DataFacts:
    if spec.dataset.id is None:
        builtin = BUILTINS_BY_NAME[str(spec.dataset.builtin)]
        shape = builtin.sample_shape
        height, width, channels = (shape[0], shape[1], shape[2]) if len(shape) == 3 else (0, 0, 0)
        return DataFacts(builtin.n_images, height, width, channels, builtin.num_classes)
    found = await connection.execute(
        select(Dataset.n_images, Dataset.image_shape, Dataset.class_names, Dataset.input_shape)
        .where(Dataset.id == spec.dataset.id, Dataset.tenant_id == tenant_id)
        .with_for_update(read=True)  # not deleted before this job is committed
    )
    dataset = found.one_or_none()
    if dataset is None:
        raise SpecError(
            f"no dataset {spec.dataset.id!r} in this account; GET /v1/datasets lists yours",
            param="dataset.id",
        )
    paired = dataset.input_shape is not None
    if paired != (spec.task == "translation"):
        raise SpecError(
            f"dataset {spec.dataset.id} is paired data (inputs -> targets): train it with task "
            "'translation'"
            if paired
            else f"task 'translation' needs paired data (an .npz of inputs and targets, or a .zip "
            f"of A/ and B/ folders); dataset {spec.dataset.id} is plain images",
            param="dataset.id",
        )
    height, width, channels = dataset.image_shape
    return DataFacts(
        dataset.n_images,
        height,
        width,
        channels,
        len(dataset.class_names or []),
        input_values=math.prod(dataset.input_shape) if paired else 0,
    )


def check_memory(spec: Spec, data: DataFacts, *, budget_bytes: int) -> None:
    """Refuse, naming the field to change, a run estimated to need more than the budget."""
    estimate = estimate_training_memory(
        spec,
        sample_shape=data.sample_shape(spec.model.image_size),
        num_classes=data.num_classes,
        num_samples=data.num_samples,
        mapped=data.mapped,
    )
    if estimate.total_bytes <= budget_bytes:
        return
    batch = estimate.largest_batch_within(budget_bytes)
    needs = (
        f"this run needs about {format_bytes(estimate.total_bytes)} to train "
        f"({format_bytes(estimate.activation_bytes)} of activations at batch "
        f"{spec.training.batch_size}, {format_bytes(estimate.parameter_bytes)} of weights and "
        f"optimizer state), over this service's {format_bytes(budget_bytes)} a job "
        "(MAX_JOB_MEMORY_BYTES)"
    )
    if batch >= 2:
        raise SpecError(
            f"{needs}: lower training.batch_size to {batch} or less, or lower model.width",
            param="training.batch_size",
        )
    raise SpecError(f"{needs}: lower model.width", param="model.width")


async def submit_job(
    engine: AsyncEngine,
    *,
    celery: Celery,
    settings: ApiSettings,
    tenant_id: str,
    body: Any,
    idempotency_key: str | None,
) -> tuple[Job, bool]:
    """Record a queued job and enqueue it. Returns ``(job, created)``; a replayed
    ``Idempotency-Key`` with the same spec returns the first job, unchanged. One transaction on
    the asyncio engine, no thread (a submission used to spend a third of its time handing work
    to one); the broker is told after the commit, in a thread, so a slow broker never holds the
    event loop."""
    if idempotency_key is not None and not 1 <= len(idempotency_key) <= MAX_IDEMPOTENCY_KEY_CHARS:
        raise InvalidRequest(
            f"Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY_CHARS} characters",
            param="Idempotency-Key",
        )
    body, fields = split_job_fields(body)
    async with engine.begin() as connection:
        spec = await validate_spec(connection, tenant_id=tenant_id, body=body, settings=settings)
        await check_quota_async(
            connection, tenant_id=tenant_id, quota_bytes=settings.max_storage_bytes_per_tenant
        )
        webhook = await submission_webhook(
            connection, tenant_id=tenant_id, webhook=fields.webhook, settings=settings
        )
        job, created = await store_jobs.create_job_async(
            connection,
            tenant_id=tenant_id,
            spec=spec,
            idempotency_key=idempotency_key,
            max_active=settings.max_concurrent_jobs_per_tenant,
            labels=fields.to_store(),
            webhook=webhook,
        )
    if created:
        try:
            send = functools.partial(enqueue_train, job.id, queue=job.queue, app=celery)
            await anyio.to_thread.run_sync(send)
        except Exception:  # the job stays queued; the reaper re-enqueues it
            log.warning("could not enqueue job %s; the reaper will retry", job.id, exc_info=True)
    return job, created


# --- reading -----------------------------------------------------------------------------------


def get_job(session: Session, *, tenant_id: str, job_id: str) -> Job:
    return get_owned(session, Job, object_id=job_id, tenant_id=tenant_id)


# The columns a job's answer is built from (no lease, worker or idempotency bookkeeping).
JOB_OUT_COLUMNS = tuple(getattr(Job, orm_attribute(JobOut, name)) for name in JobOut.model_fields)
JOB_BY_ID = select(*JOB_OUT_COLUMNS).where(
    Job.id == bindparam("job_id"), Job.tenant_id == bindparam("tenant_id")
)


@dataclass(frozen=True)
class JobView:
    """A job's answer as sent: the JSON bytes and their ETag."""

    body: bytes
    etag: str
    status: str


async def read_job(reads: AsyncReads, *, tenant_id: str, job_id: str) -> JobView:
    """The poll path: one indexed read of the columns the answer needs, no ORM objects."""
    row = await reads.one(JOB_BY_ID, job_id=job_id, tenant_id=tenant_id)
    if row is None:
        raise NotFound(f"job {job_id} not found")
    body = JobOut.model_validate(row).model_dump_json().encode()
    return JobView(body, f'"{hashlib.blake2b(body, digest_size=12).hexdigest()}"', row["status"])


@dataclass(frozen=True)
class JobPoller:
    """What a status poll needs, in one place (one request dependency, not three)."""

    reads: AsyncReads
    poll_s: float  # how often a long poll re-reads the job

    async def view(
        self, *, tenant_id: str, job_id: str, wait_s: float, if_none_match: str | None
    ) -> JobView:
        return await wait_for_job(
            self.reads,
            tenant_id=tenant_id,
            job_id=job_id,
            wait_s=wait_s,
            poll_s=self.poll_s,
            if_none_match=if_none_match,
        )


async def wait_for_job(
    reads: AsyncReads,
    *,
    tenant_id: str,
    job_id: str,
    wait_s: float,
    poll_s: float,
    if_none_match: str | None = None,
) -> JobView:
    """The job once it has changed, or after ``wait_s``: a change is a new status, or, when the
    caller sent the ETag it holds, any change at all. A finished job answers at once."""
    view = await read_job(reads, tenant_id=tenant_id, job_id=job_id)
    deadline = time.monotonic() + wait_s
    first_status = view.status
    while (
        view.status not in FINISHED_STATUSES
        and time.monotonic() < deadline
        and view.status == first_status
        and (if_none_match is None or view.etag == if_none_match)
    ):
        await anyio.sleep(min(poll_s, max(0.0, deadline - time.monotonic())))
        view = await read_job(reads, tenant_id=tenant_id, job_id=job_id)
    return view


def list_jobs(
    session: Session,
    *,
    tenant_id: str,
    status: str | None,
    after: str | None,
    limit: int,
    tags: Sequence[str] = (),
) -> tuple[list[Job], bool]:
    where = [] if status is None else [Job.status == status]
    return list_owned(
        session, Job, tenant_id=tenant_id, after=after, limit=limit, where=where, tags=tags
    )


def cancel_job(session: Session, *, tenant_id: str, job_id: str) -> Job:
    """A queued job is cancelled at once; a running one is flagged for its worker."""
    job = store_jobs.request_cancel(session, job_id=job_id, tenant_id=tenant_id)
    session.commit()
    return job


def pause_job(session: Session, *, tenant_id: str, job_id: str) -> Job:
    """A queued job pauses at once; a running one is flagged and its worker checkpoints."""
    job = store_jobs.request_pause(session, job_id=job_id, tenant_id=tenant_id)
    session.commit()
    return job


def resume_job(
    session: Session, *, celery: Celery, settings: ApiSettings, tenant_id: str, job_id: str
) -> Job:
    """A paused job is queued again and enqueued after the commit (the reaper re-enqueues it if
    the broker is away)."""
    job, enqueue = store_jobs.resume_job(
        session,
        job_id=job_id,
        tenant_id=tenant_id,
        max_active=settings.max_concurrent_jobs_per_tenant,
    )
    session.commit()
    if enqueue:
        _enqueue(job, celery)
    return job


def continue_job(
    session: Session,
    *,
    storage: ObjectStorage,
    celery: Celery,
    settings: ApiSettings,
    tenant_id: str,
    job_id: str,
    steps: int,
) -> Job:
    """A new job with the source's spec trained to ``steps`` in all, starting from a copy of the
    source's newest checkpoint (so deleting the source later does not break it). The source and
    its model stay as they are."""
    source = get_job(session, tenant_id=tenant_id, job_id=job_id)
    if source.status not in FINISHED_STATUSES:
        advice = "resume it instead" if source.status == JobStatus.PAUSED else "wait for it"
        raise Conflict(
            f"job {job_id} is {source.status}; only a finished job is continued ({advice})"
        )
    checkpoint = store_jobs.latest_checkpoint(session, job_id=job_id)
    if checkpoint is None:
        raise Conflict(f"job {job_id} saved no checkpoint, so there is nothing to continue from")
    if steps <= checkpoint.step:
        raise InvalidRequest(
            f"steps is the new total and must be more than the {checkpoint.step} steps of job "
            f"{job_id}'s newest checkpoint",
            param="steps",
        )
    if steps > settings.max_steps:
        raise InvalidRequest(f"steps must be at most {settings.max_steps}", param="steps")
    check_quota(session, tenant_id=tenant_id, quota_bytes=settings.max_storage_bytes_per_tenant)
    data = dict(source.spec)
    data["training"] = {**data.get("training", {}), "steps": steps}
    try:
        spec = parse_spec(data)
    except SpecError as error:  # a spec stored under older rules
        raise InvalidRequest(f"job {job_id}'s spec no longer validates: {error}") from None
    dataset_id = spec.dataset.id
    if dataset_id is not None and session.get(Dataset, dataset_id) is None:
        raise Conflict(f"dataset {dataset_id}, which job {job_id} trained on, was deleted")
    job, _ = store_jobs.create_job(
        session,
        tenant_id=tenant_id,
        spec=spec,
        max_active=settings.max_concurrent_jobs_per_tenant,
        continued_from=job_id,
        webhook=source.webhook,
    )
    key = checkpoint_key(job.id, checkpoint.step)
    copy_object(storage, checkpoint.storage_key, key)
    store_jobs.record_checkpoint(
        session,
        job_id=job.id,
        step=checkpoint.step,
        storage_key=key,
        metrics=checkpoint.metrics,
        size_bytes=checkpoint.size_bytes,
    )
    store_jobs.record_event(
        session, job_id=job.id, step=checkpoint.step, code="continued",
        message=f"continues job {job_id} from its checkpoint at step {checkpoint.step} to step "
        f"{steps}",
    )  # fmt: skip
    session.commit()
    _enqueue(job, celery)
    return get_job(session, tenant_id=tenant_id, job_id=job.id)


def _enqueue(job: Job, celery: Celery) -> None:
    try:
        enqueue_train(job.id, queue=job.queue, app=celery)
    except Exception:  # the job stays queued; the reaper re-enqueues it
        log.warning("could not enqueue job %s; the reaper will retry", job.id, exc_info=True)


def delete_job(session: Session, *, storage: ObjectStorage, tenant_id: str, job_id: str) -> None:
    """Delete a finished or paused job (its events, metrics, samples and checkpoints), then its
    objects. Refused (``Conflict``) while it is queued or running, and while the model it trained
    exists: that model is its record, so delete the model first."""
    job = session.scalar(
        select(Job).where(Job.id == job_id, Job.tenant_id == tenant_id).with_for_update()
    )
    if job is None:
        raise NotFound(f"job {job_id} not found")
    if job.status in ACTIVE_STATUSES:
        raise Conflict(
            f"job {job_id} is {job.status}; cancel it (POST /v1/jobs/{job_id}/cancel) and "
            "delete it once it has stopped"
        )
    if job.model_id is not None and session.get(TrainedModel, job.model_id) is not None:
        raise Conflict(
            f"job {job_id} trained model {job.model_id}, which still exists; delete the model "
            f"first (DELETE /v1/models/{job.model_id}) or keep the job"
        )
    session.delete(job)
    session.commit()
    delete_objects(storage, job_prefix(job_id), what=f"job {job_id}")


def list_events(
    session: Session, *, tenant_id: str, job_id: str, after: int | None, limit: int
) -> tuple[list[JobEvent], bool]:
    get_job(session, tenant_id=tenant_id, job_id=job_id)
    query = select(JobEvent).where(JobEvent.job_id == job_id)
    return ascending_page(session, query, key=JobEvent.seq, after=after, limit=limit)


def metric_series(
    session: Session,
    *,
    tenant_id: str,
    job_id: str,
    names: list[str] | None,
    after_step: int | None,
    max_steps: int,
) -> MetricSeries:
    """Points of up to ``max_steps`` consecutive logged steps after ``after_step``, grouped by
    name; a page never splits a step."""
    get_job(session, tenant_id=tenant_id, job_id=job_id)
    where = [Metric.job_id == job_id]
    if names:
        where.append(Metric.name.in_(names))
    if after_step is not None:
        where.append(Metric.step > after_step)
    steps = session.scalars(
        select(Metric.step).where(*where).distinct().order_by(Metric.step).limit(max_steps + 1)
    ).all()
    has_more = len(steps) > max_steps
    steps = steps[:max_steps]
    data: dict[str, list[list[int | float | None]]] = {name: [] for name in names or []}
    if steps:
        rows = session.execute(
            select(Metric.name, Metric.step, Metric.value)
            .where(*where, Metric.step <= steps[-1])
            .order_by(Metric.name, Metric.step)
        ).all()
        for name, step, value in rows:
            data.setdefault(name, []).append([step, value])
    return MetricSeries(data=data, has_more=has_more, last_step=steps[-1] if steps else None)


def list_samples(
    session: Session, *, tenant_id: str, job_id: str, after: int | None, limit: int
) -> tuple[list[Sample], bool]:
    get_job(session, tenant_id=tenant_id, job_id=job_id)
    query = select(Sample).where(Sample.job_id == job_id)
    return ascending_page(session, query, key=Sample.step, after=after, limit=limit)


def sample_png(
    session: Session, *, storage: ObjectStorage, tenant_id: str, job_id: str, step: int
) -> bytes:
    get_job(session, tenant_id=tenant_id, job_id=job_id)
    key = session.scalar(
        select(Sample.storage_key).where(Sample.job_id == job_id, Sample.step == step)
    )
    if key is None:
        raise NotFound(f"job {job_id} has no sample grid at step {step}", param="step")
    return storage.get_bytes(key)


def list_checkpoints(
    session: Session, *, tenant_id: str, job_id: str, after: int | None, limit: int
) -> tuple[list[CheckpointOut], bool]:
    get_job(session, tenant_id=tenant_id, job_id=job_id)
    query = select(Checkpoint).where(Checkpoint.job_id == job_id)
    rows, more = ascending_page(session, query, key=Checkpoint.step, after=after, limit=limit)
    best = store_jobs.best_checkpoint_step(session, job_id=job_id, best_by=BEST_CHECKPOINT_METRICS)
    return [
        CheckpointOut.model_validate(row).model_copy(update={"best": row.step == best})
        for row in rows
    ], more
