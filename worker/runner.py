"""One training job, start to finish, with no Celery in sight (the task only calls ``run_job``).

1. Claim the job row (a conditional UPDATE): a duplicate delivery, a job someone else runs or
   that is already finished, or a job whose retry budget is spent returns ``NOT_CLAIMED`` at once
   and trains nothing. A worker that is shutting down claims nothing (``SHUTTING_DOWN``). Given
   the message's ``queue`` (the Celery task passes it), the claim takes the fairest waiting job
   of that queue instead (``store.jobs.claim_next``), which may be another than ``job_id``.
2. Load the data: a builtin from ``GANFORGE_DATA_DIR``; ``{"id": "ds_..."}`` is the tenant's
   uploaded pack, downloaded from ``datasets/{id}/pack.npz`` once per host into the pack cache
   (``worker.pack_cache``), whose local copy goes to the loader (a large one is memory-mapped).
   Check the spec's memory estimate against ``MAX_JOB_MEMORY_BYTES``.
3. Build the trainer with the ``Reporter`` (what the run records) and ``Stops`` (when it must
   stop: the ``Lease`` lost or a cancel, the memory budget, a shutdown); resume from the newest
   checkpoint if the job has one.
4. Train, then finish the row from the ``Outcome``: ``succeeded`` (the generator uploaded to
   ``models/{id}/`` and registered), ``failed`` with an error code, ``cancelled``, or handed back
   ``interrupted`` and re-enqueued when the worker is shutting down. A job is never left running
   by an error: if even the final write fails (database down for longer than the writes may
   wait), the lease runs out and the reaper re-enqueues it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import secrets
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Final

import torch
from celery import Celery
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from gan_engine.callbacks import Callback
from gan_engine.checkpoint import CheckpointError, load_checkpoint
from gan_engine.data import Dataset, DatasetError
from gan_engine.events import Phase
from gan_engine.run import build_trainer, export_files, load_training_data
from gan_engine.spec import Spec, SpecError, parse_spec
from gan_engine.trainer import Trainer, TrainingDiverged, TrainResult
from store.db import get_sessionmaker, session_scope
from store.jobs import claim_job, claim_next, finish_job, get_job, latest_checkpoint, succeed_job
from store.models import Dataset as DatasetRow
from store.models import JobStatus, finite_or_none, new_id
from store.queue import enqueue_train, make_celery
from store.settings import Settings, get_settings
from store.storage import (
    ObjectStorage,
    StorageKeyNotFound,
    dataset_pack_key,
    model_prefix,
    storage_from_url,
)
from worker.evaluators import StorageEvaluatorCache
from worker.lease import Lease
from worker.memory import MemoryWatch, check_estimate
from worker.outcome import (
    CHECKPOINT_ERROR,
    DATASET_ERROR,
    DIVERGED,
    INTERNAL_ERROR,
    INVALID_SPEC,
    LEASE_LOST,
    MAX_RUNTIME_EXCEEDED,
    MEMORY_EXCEEDED,
    NOT_CLAIMED,
    OUT_OF_MEMORY,
    SHUTTING_DOWN,
    STORAGE_UNAVAILABLE,
    JobFailed,
    Outcome,
    StopReason,
)
from worker.pack_cache import PackCache
from worker.reporter import DatabaseUnavailable, Reporter

log = logging.getLogger("ganforge.worker")

__all__ = ["LEASE_LOST", "NOT_CLAIMED", "SHUTTING_DOWN", "Outcome", "run_job"]

CONTENT_TYPES: Final = {".json": "application/json", ".safetensors": "application/octet-stream"}


def new_worker_id() -> str:
    """Unique per task run: host, pid and a random part (the token of the job's lease)."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


_CELERY: dict[str, Celery] = {}


def _celery_for(settings: Settings) -> Celery:
    if settings.broker_url not in _CELERY:
        _CELERY[settings.broker_url] = make_celery(settings)
    return _CELERY[settings.broker_url]


class Stops(Callback):
    """When the run must stop before its last step, asked after every step: the lease lost or a
    cancel (``Lease``), the memory budget (``MemoryWatch``), a worker shutdown. Also hands the
    logged steps' progress to the lease."""

    def __init__(self, lease: Lease, memory: MemoryWatch, shutdown: threading.Event) -> None:
        self.lease, self.memory, self.shutdown = lease, memory, shutdown

    @property
    def reason(self) -> StopReason | None:
        if reason := self.lease.stop_reason:
            return reason
        if self.memory.exceeded is not None:
            return StopReason.MEMORY_EXCEEDED
        return StopReason.SHUTDOWN if self.shutdown.is_set() else None

    def on_step(self, step: int, metrics: dict[str, float]) -> None:
        self.lease.progress(step, metrics.get("images_per_s"))

    def on_phase(self, phase: Phase, step: int) -> None:
        self.lease.progress(step, at_once=True)

    def should_stop(self, step: int) -> bool:
        self.memory.check(step)
        return self.reason is not None


def run_job(
    job_id: str,
    *,
    settings: Settings | None = None,
    worker_id: str | None = None,
    shutdown: threading.Event | None = None,
    requeue: Callable[[str], None] | None = None,
    queue: str | None = None,
) -> Outcome:
    """Train job ``job_id`` if this call can claim it; returns how it left the job (``Outcome``;
    its status is a ``JobStatus``, or ``NOT_CLAIMED`` / ``LEASE_LOST`` / ``SHUTTING_DOWN``; its
    ``job_id`` the job trained).

    ``queue``: claim the fairest waiting job of that queue rather than ``job_id`` itself (the
    message of ``job_id`` is then just the trigger of one claim; ``store.jobs.claim_next``); if
    none waits, ``job_id`` itself if its worker's lease ran out (as ``claim_job`` takes it over).

    ``shutdown``: set it (the worker does on SIGTERM) to stop after the current step, save a
    checkpoint there, hand the job back as ``interrupted`` and re-enqueue it with ``requeue``
    (default: ``store.queue.enqueue_train`` on the settings' broker). Already set: nothing is
    claimed.
    """
    settings = settings or get_settings()
    worker_id = worker_id or new_worker_id()
    shutdown = shutdown or threading.Event()
    if shutdown.is_set():
        log.info("job %s not claimed: this worker is shutting down", job_id)
        return Outcome(SHUTTING_DOWN)
    sessions = get_sessionmaker(settings.database_url)
    storage_from_url(settings.storage_url, settings)  # a bad URL fails before the claim
    memory = MemoryWatch(settings.max_job_memory_bytes)  # the baseline: before the job loads
    claim = {"worker_id": worker_id, "lease_s": settings.lease_s,
             "max_attempts": settings.max_attempts}  # fmt: skip
    with session_scope(sessions) as session:
        job = None if queue is None else claim_next(session, queue=queue, **claim)
        if job is None:  # also the message's own job, running on a lease that ran out
            job = claim_job(session, job_id=job_id, **claim)
        if job is None:
            log.info(
                "message of job %s claimed nothing (duplicate delivery, not queued, out of "
                "attempts, or no job of its queue waits)",
                job_id,
            )
            return Outcome(NOT_CLAIMED, job_id=job_id)
        trigger, job_id, job_queue = job_id, job.id, job.queue
        spec_data, tenant_id, attempt = dict(job.spec), job.tenant_id, job.attempt
    log.info("job %s claimed by %s (attempt %d; sent %s)", job_id, worker_id, attempt, trigger)
    if job_devices(spec_data) > 1:  # ranks under torchrun; its rank 0 runs run_claimed
        from worker.ranks import run_as_ranks  # its subprocess machinery: only here

        outcome = run_as_ranks(job_id, worker_id, settings, job_devices(spec_data), shutdown)
    else:
        outcome = run_claimed(
            job_id, worker_id, settings, spec_data, tenant_id, shutdown, memory=memory
        )
    if outcome.status == JobStatus.INTERRUPTED:
        resend = requeue or (
            lambda job: enqueue_train(job, queue=job_queue, app=_celery_for(settings))
        )
        resend(job_id)
    log.info("job %s %s %s", job_id, outcome.status, outcome.error_code or "")
    return dataclasses.replace(outcome, job_id=job_id)


def job_devices(spec_data: dict[str, Any]) -> int:
    """The stored spec's ``training.devices`` (1 when unreadable: then the spec check fails it)."""
    try:
        return max(1, int(spec_data.get("training", {}).get("devices", 1)))
    except (AttributeError, TypeError, ValueError):
        return 1


def run_claimed(
    job_id: str,
    worker_id: str,
    settings: Settings,
    spec_data: dict[str, Any],
    tenant_id: str,
    shutdown: threading.Event,
    *,
    memory: MemoryWatch | None = None,
) -> Outcome:
    """Train the job this worker has claimed (its lease, its reports, its final write); in a
    run on several devices, rank 0 calls this and the other ranks only train."""
    sessions = get_sessionmaker(settings.database_url)
    storage = storage_from_url(settings.storage_url, settings)
    memory = memory or MemoryWatch(settings.max_job_memory_bytes)
    lease = Lease(
        job_id=job_id,
        worker_id=worker_id,
        sessions=sessions,
        lease_s=settings.lease_s,
        heartbeat_s=settings.heartbeat_s,
        webhook_progress_interval_s=settings.webhook_progress_interval_s,
    )
    reporter = Reporter(
        job_id=job_id,
        sessions=sessions,
        storage=storage,
        writable=lambda: not lease.lost,
        wait_s=settings.lease_s,  # longer than that, the lease is gone anyway
        keep_checkpoints=settings.keep_checkpoints,
    )
    run = _Run(
        job_id, tenant_id, settings, sessions, storage, reporter, Stops(lease, memory, shutdown)
    )
    lease.start()
    try:
        outcome = run.outcome(spec_data)
        if outcome.status not in (JobStatus.SUCCEEDED, LEASE_LOST):  # success wrote its own
            outcome = run.finish(outcome)
    finally:
        lease.stop()
    return outcome


class _Run:
    """One attempt at a claimed job: everything between the claim and the final write."""

    def __init__(
        self,
        job_id: str,
        tenant_id: str,
        settings: Settings,
        sessions: sessionmaker[Session],
        storage: ObjectStorage,
        reporter: Reporter,
        stops: Stops,
    ) -> None:
        self.job_id, self.tenant_id, self.settings = job_id, tenant_id, settings
        self.sessions, self.storage = sessions, storage
        self.reporter, self.stops = reporter, stops
        self.trainer: Trainer | None = None

    @property
    def step(self) -> int | None:
        return self.trainer.step if self.trainer is not None else None

    @property
    def worker_id(self) -> str:
        return self.stops.lease.worker_id

    def outcome(self, spec_data: dict[str, Any]) -> Outcome:
        """Train and say how it ended; an error is a failed outcome, never an exception (but a
        database away for longer than the writes may wait: then nothing can be written, and the
        lease runs out)."""
        try:
            return self.train(spec_data)
        except DatabaseUnavailable:
            raise
        except JobFailed as error:
            return Outcome.failed(error.code, str(error), self.step)
        except TrainingDiverged as error:
            return Outcome.failed(DIVERGED, str(error), self.step)
        except torch.cuda.OutOfMemoryError as error:
            message = f"out of memory: {error}. Lower training.batch_size or model.width"
            return Outcome.failed(OUT_OF_MEMORY, message, self.step)
        except Exception as error:
            log.exception("job %s failed with an unexpected error", self.job_id)
            message = f"internal error ({type(error).__name__}: {error}); please report it"
            return Outcome.failed(INTERNAL_ERROR, message, self.step)

    def train(self, spec_data: dict[str, Any]) -> Outcome:
        try:
            spec = parse_spec(spec_data)
        except SpecError as error:
            raise JobFailed(INVALID_SPEC, f"the stored spec is not valid: {error}") from None
        spec, dataset = self.load_data(spec)
        check_estimate(spec, dataset, budget_bytes=self.settings.max_job_memory_bytes)
        try:
            self.trainer = trainer = build_trainer(
                spec,
                dataset,
                callbacks=[self.reporter, self.stops],
                evaluator_cache=StorageEvaluatorCache(self.storage),
            )
        except SpecError as error:
            raise JobFailed(INVALID_SPEC, str(error)) from None
        self.stops.memory.watch(trainer.device)
        self.stops.lease.run_progress = trainer.progress
        self.resume(trainer)
        result = trainer.fit()
        return self.ending(spec, dataset, trainer, result)

    def finish(self, outcome: Outcome) -> Outcome:
        """Write ``outcome`` (not a success) to the job row after every held write, retried like
        them; ``LEASE_LOST`` if the job is no longer ours."""
        if self.stops.lease.lost:
            return Outcome(LEASE_LOST, step=outcome.step)
        failed = outcome.is_failure
        written = self.reporter.writes.call(
            lambda session: finish_job(
                session,
                job_id=self.job_id,
                worker_id=self.worker_id,
                status=outcome.status,
                error_code=outcome.error_code if failed else None,
                error_message=outcome.message if failed else None,
                note=None if failed else outcome.message,
                step=outcome.step,
            ),
            timeout_s=self.settings.lease_s,
        )
        if written or self.left_as(outcome.status):  # a retry after an unclear commit says False
            return outcome
        return Outcome(LEASE_LOST, step=outcome.step)

    def left_as(self, status: str, model_id: str | None = None) -> bool:
        """Whether this worker left the job in ``status`` (with ``model_id``)."""
        with session_scope(self.sessions) as session:
            job = get_job(session, job_id=self.job_id)
            mine = job.status == status and job.worker_id == self.worker_id
            return mine and (model_id is None or job.model_id == model_id)

    def ending(
        self, spec: Spec, dataset: Dataset, trainer: Trainer, result: TrainResult
    ) -> Outcome:
        step = result.step
        reason = self.stops.reason
        if reason == StopReason.LEASE_LOST:
            return Outcome(LEASE_LOST, step=step)
        if reason == StopReason.CANCELLED:
            return Outcome(JobStatus.CANCELLED, step=step)
        if reason == StopReason.MEMORY_EXCEEDED:
            return Outcome.failed(MEMORY_EXCEEDED, self.stops.memory.message(), step)
        if reason in (StopReason.SHUTDOWN, StopReason.PAUSED):
            if step not in self.reporter.checkpoint_steps:  # no step is trained twice
                self.reporter.on_checkpoint(step, trainer.state_dict())
            if reason == StopReason.PAUSED:
                note = f"paused at step {step}; POST /v1/jobs/{self.job_id}/resume goes on there"
                return Outcome(JobStatus.PAUSED, message=note, step=step)
            note = f"worker shut down at step {step}; the job resumes there"
            return Outcome(JobStatus.INTERRUPTED, message=note, step=step)
        if result.stopped_early:  # the trainer's own limit: training.max_runtime_s
            return Outcome.failed(
                MAX_RUNTIME_EXCEEDED,
                f"stopped at step {step} of {spec.training.steps}: training.max_runtime_s "
                f"({spec.training.max_runtime_s:g} s) was reached. Raise max_runtime_s or lower "
                "training.steps; the checkpoints saved so far are listed under the job",
                step,
            )
        return self.succeed(spec, dataset, trainer, result)

    def succeed(
        self, spec: Spec, dataset: Dataset, trainer: Trainer, result: TrainResult
    ) -> Outcome:
        """Upload the generator, then mark the job succeeded and register the model in one
        commit, once every held write is made."""
        model_id = new_id("mdl")
        trainer.enter_phase(Phase.EXPORTING)
        files = export_files(trainer, result)
        for name, data in files.items():
            content_type = CONTENT_TYPES.get(Path(name).suffix, "application/octet-stream")
            with _storage_failure(f"the trained generator ({model_prefix(model_id)}{name})"):
                self.storage.put_bytes(model_prefix(model_id) + name, data, content_type)
        summary = result.summary or self.reporter.latest_metrics  # resumed at the last step
        conditional = spec.model.conditioning != "none"
        model = self.reporter.writes.call(
            lambda session: succeed_job(
                session,
                job_id=self.job_id,
                worker_id=self.worker_id,
                model_id=model_id,
                class_names=dataset.class_names if conditional else None,
                image_shape=image_shape(dataset),
                summary=_json_safe(summary),
                step=result.step,
                size_bytes=sum(len(data) for data in files.values()),
            ),
            timeout_s=self.settings.lease_s,
        )
        if model is None and not self.left_as(JobStatus.SUCCEEDED, model_id):
            self.storage.delete_prefix(model_prefix(model_id))  # taken from us while uploading
            return Outcome(LEASE_LOST, step=result.step)
        return Outcome(JobStatus.SUCCEEDED, step=result.step)

    def load_data(self, spec: Spec) -> tuple[Spec, Dataset]:
        """The spec's training data (and the spec with the image size it fits). An uploaded
        dataset must still exist and belong to the job's tenant."""
        try:
            with self.pack_path(spec) as pack_path:
                return load_training_data(
                    spec, data_dir=self.settings.ganforge_data_dir, pack_path=pack_path
                )
        except DatasetError as error:
            raise JobFailed(DATASET_ERROR, str(error)) from None

    @contextlib.contextmanager
    def pack_path(self, spec: Spec) -> Iterator[Path | None]:
        """The local copy of the spec's uploaded pack, from the host's pack cache (None: a
        builtin)."""
        dataset_id = spec.dataset.id
        if dataset_id is None:
            yield None
            return
        with session_scope(self.sessions) as session:
            key = session.scalar(
                select(DatasetRow.storage_key).where(
                    DatasetRow.id == dataset_id, DatasetRow.tenant_id == self.tenant_id
                )
            )
        if key is None:
            raise DatasetError(
                f"dataset {dataset_id} does not exist (was it deleted?); upload it again and "
                "submit a new job"
            )
        cache = PackCache(
            self.settings.pack_cache_dir or self.settings.data_dir / "pack-cache",
            self.settings.pack_cache_bytes,
        )
        with contextlib.ExitStack() as held:  # the pack is kept in the cache until loaded
            try:
                with _storage_failure(f"the data of dataset {dataset_id}"):
                    path = held.enter_context(cache.local(self.storage, key))
            except StorageKeyNotFound:
                raise DatasetError(
                    f"the data of dataset {dataset_id} is missing from storage "
                    f"({dataset_pack_key(dataset_id)}); upload it again"
                ) from None
            yield path

    def resume(self, trainer: Trainer) -> int | None:
        """Load the job's newest checkpoint into ``trainer``; returns its step (None: fresh)."""
        if not resume_from_newest(trainer, self.sessions, self.storage, self.job_id):
            return None
        self.reporter.checkpoint_steps.append(trainer.step)
        self.stops.lease.progress(trainer.step)
        self.reporter.event("resumed", f"resumed from step {trainer.step}", step=trainer.step)
        return trainer.step


def resume_from_newest(
    trainer: Trainer, sessions: sessionmaker[Session], storage: ObjectStorage, job_id: str
) -> bool:
    """Load job ``job_id``'s newest checkpoint into ``trainer``; False: it has none."""
    with session_scope(sessions) as session:
        checkpoint = latest_checkpoint(session, job_id=job_id)
        found = None if checkpoint is None else (checkpoint.step, checkpoint.storage_key)
    if found is None:
        return False
    step, key = found
    try:
        with _storage_failure(f"the checkpoint of step {step}"):
            state = storage.get_bytes(key)
        trainer.load_state_dict(load_checkpoint(state))
    except (CheckpointError, StorageKeyNotFound) as error:
        raise JobFailed(
            CHECKPOINT_ERROR, f"cannot resume from the checkpoint at step {step}: {error}"
        ) from None
    return True


@contextlib.contextmanager
def _storage_failure(what: str) -> Iterator[None]:
    """A storage call that fails, after the client's own bounded tries, fails the job as
    ``storage_unavailable``; a missing key is left to the caller."""
    try:
        yield
    except StorageKeyNotFound:
        raise
    except Exception as error:
        raise JobFailed(
            STORAGE_UNAVAILABLE,
            f"object storage failed on {what}: {type(error).__name__}: {error}. Submit the job "
            "again once storage is reachable",
        ) from error


def image_shape(dataset: Dataset) -> list[int]:
    """``[H, W, C]`` for images (the datasets table's convention), ``[2]`` for points."""
    shape = list(dataset.sample_shape)
    if len(shape) == 3:
        channels, height, width = shape
        return [height, width, channels]
    return shape


def _json_safe(metrics: dict[str, float]) -> dict[str, Any]:
    return {name: finite_or_none(value) for name, value in metrics.items()}
