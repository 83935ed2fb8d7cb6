"""One training job, start to finish, with no Celery in sight (the task only calls ``run_job``).

1. Claim the job row (a conditional UPDATE): a duplicate delivery, or a job someone else runs or
   that is already finished, returns ``NOT_CLAIMED`` at once and trains nothing.
2. Resolve the dataset: a builtin is read from ``GANFORGE_DATA_DIR``; ``{"id": "ds_..."}`` is the
   tenant's uploaded pack, downloaded from ``datasets/{id}/pack.npz`` to a temporary file.
3. Build the trainer with a ``Reporter``; resume from the newest checkpoint if the job has one.
4. Train, then finish the row: ``succeeded`` (the generator uploaded to ``models/{id}/`` and
   registered), ``failed`` with an error code, ``cancelled``, or handed back ``interrupted`` and
   re-enqueued when the worker is shutting down. A job is never left running by an error: if even
   the final write fails (database down), the lease runs out and the reaper re-enqueues it.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

import torch
from celery import Celery
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from gan_engine.checkpoint import CheckpointError, load_checkpoint
from gan_engine.data import Dataset, DatasetError
from gan_engine.run import build_trainer, export_files, load_training_data
from gan_engine.spec import Spec, SpecError, parse_spec
from gan_engine.trainer import Trainer, TrainingDiverged, TrainResult
from store.db import get_sessionmaker, session_scope
from store.jobs import claim_job, finish_job, latest_checkpoint, succeed_job
from store.models import Dataset as DatasetRow
from store.models import finite_or_none, new_id
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
from worker.reporter import Reporter, StopReason

log = logging.getLogger("ganforge.worker")

# What run_job returns besides the job statuses "succeeded", "failed", "cancelled" and
# "interrupted" (handed back on a worker shutdown).
NOT_CLAIMED: Final = "not_claimed"  # a duplicate delivery, or the job is not claimable
LEASE_LOST: Final = "lease_lost"  # the job was taken away mid-run; nothing more was written

# Error codes of failed jobs (jobs.error_code).
INVALID_SPEC: Final = "invalid_spec"
DATASET_ERROR: Final = "dataset_error"
CHECKPOINT_ERROR: Final = "checkpoint_error"
DIVERGED: Final = "diverged"
MAX_RUNTIME_EXCEEDED: Final = "max_runtime_exceeded"
OUT_OF_MEMORY: Final = "out_of_memory"
INTERNAL_ERROR: Final = "internal_error"

CONTENT_TYPES: Final = {".json": "application/json", ".safetensors": "application/octet-stream"}


class JobFailed(Exception):
    """Ends the job as failed with ``code``; the message is shown to the user."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def new_worker_id() -> str:
    """Unique per task run: host, pid and a random part (the token of the job's lease)."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


_CELERY: dict[str, Celery] = {}


def _celery_for(settings: Settings) -> Celery:
    if settings.broker_url not in _CELERY:
        _CELERY[settings.broker_url] = make_celery(settings)
    return _CELERY[settings.broker_url]


def run_job(
    job_id: str,
    *,
    settings: Settings | None = None,
    worker_id: str | None = None,
    shutdown: threading.Event | None = None,
    requeue: Callable[[str], None] | None = None,
) -> str:
    """Train job ``job_id`` if this call can claim it; returns the status it left the job in
    (``succeeded``, ``failed``, ``cancelled``, ``interrupted``) or ``NOT_CLAIMED`` /
    ``LEASE_LOST``.

    ``shutdown``: set it (the worker does on SIGTERM) to stop after the current step, save a
    checkpoint there, hand the job back as ``interrupted`` and re-enqueue it with ``requeue``
    (default: ``store.queue.enqueue_train`` on the settings' broker).
    """
    settings = settings or get_settings()
    worker_id = worker_id or new_worker_id()
    sessions = get_sessionmaker(settings.database_url)
    storage = storage_from_url(settings.storage_url, settings)  # a bad URL fails before the claim
    with session_scope(sessions) as session:
        job = claim_job(session, job_id=job_id, worker_id=worker_id, lease_s=settings.lease_s)
        if job is None:
            log.info("job %s not claimed (duplicate delivery, or not queued)", job_id)
            return NOT_CLAIMED
        spec_data, tenant_id, attempt = dict(job.spec), job.tenant_id, job.attempt
    log.info("job %s claimed by %s (attempt %d)", job_id, worker_id, attempt)

    reporter = Reporter(
        job_id=job_id,
        worker_id=worker_id,
        sessions=sessions,
        storage=storage,
        lease_s=settings.lease_s,
        heartbeat_s=settings.heartbeat_s,
        shutdown=shutdown,
    )
    reporter.start()
    finish: dict[str, Any] | None
    try:
        finish = _train(job_id, tenant_id, spec_data, settings, sessions, storage, reporter)
    except JobFailed as error:
        finish = {"status": "failed", "error_code": error.code, "error_message": str(error)}
    except TrainingDiverged as error:
        finish = {"status": "failed", "error_code": DIVERGED, "error_message": str(error)}
    except torch.cuda.OutOfMemoryError as error:
        message = f"out of memory: {error}. Lower training.batch_size or model.width"
        finish = {"status": "failed", "error_code": OUT_OF_MEMORY, "error_message": message}
    except Exception as error:
        log.exception("job %s failed with an unexpected error", job_id)
        message = f"internal error ({type(error).__name__}: {error}); please report it"
        finish = {"status": "failed", "error_code": INTERNAL_ERROR, "error_message": message}
    finally:
        reporter.stop()

    if reporter.lease_lost:
        return LEASE_LOST
    if finish is None:
        log.info("job %s succeeded", job_id)
        return "succeeded"
    finish.setdefault("step", reporter.step)
    with session_scope(sessions) as session:
        if not finish_job(session, job_id=job_id, worker_id=worker_id, **finish):
            return LEASE_LOST
    status = str(finish["status"])
    if status == "interrupted":
        if requeue is None:
            enqueue_train(job_id, app=_celery_for(settings))
        else:
            requeue(job_id)
    log.info("job %s %s %s", job_id, status, finish.get("error_code") or "")
    return status


def _train(
    job_id: str,
    tenant_id: str,
    spec_data: dict[str, Any],
    settings: Settings,
    sessions: sessionmaker[Session],
    storage: ObjectStorage,
    reporter: Reporter,
) -> dict[str, Any] | None:
    """Train; return the ``finish_job`` arguments, or None when nothing is left to write (the
    job succeeded, or its lease was lost)."""
    try:
        spec = parse_spec(spec_data)
    except SpecError as error:
        raise JobFailed(INVALID_SPEC, f"the stored spec is not valid: {error}") from None
    dataset = resolve_dataset(
        spec, tenant_id=tenant_id, settings=settings, storage=storage, sessions=sessions
    )
    try:
        trainer = build_trainer(
            spec,
            dataset,
            callbacks=[reporter],
            evaluator_cache=StorageEvaluatorCache(storage),
        )
    except SpecError as error:
        raise JobFailed(INVALID_SPEC, str(error)) from None
    resume(trainer, job_id=job_id, sessions=sessions, storage=storage, reporter=reporter)
    result = trainer.fit()

    reason = reporter.stop_reason
    if reason == StopReason.LEASE_LOST:
        return None
    if reason == StopReason.CANCELLED:
        return {"status": "cancelled", "step": result.step}
    if reason == StopReason.SHUTDOWN:
        reporter.on_checkpoint(result.step, trainer.state_dict())  # no step is trained twice
        return {
            "status": "interrupted",
            "error_message": f"worker shut down at step {result.step}; the job resumes there",
            "step": result.step,
        }
    if result.stopped_early:  # the trainer's own limit: training.max_runtime_s
        return {
            "status": "failed",
            "error_code": MAX_RUNTIME_EXCEEDED,
            "error_message": (
                f"stopped at step {result.step} of {spec.training.steps}: training.max_runtime_s "
                f"({spec.training.max_runtime_s:g} s) was reached. Raise max_runtime_s or lower "
                "training.steps; the checkpoints saved so far are listed under the job"
            ),
            "step": result.step,
        }
    _succeed(job_id, trainer, result, spec, dataset, sessions, storage, reporter)
    return None


def _succeed(
    job_id: str,
    trainer: Trainer,
    result: TrainResult,
    spec: Spec,
    dataset: Dataset,
    sessions: sessionmaker[Session],
    storage: ObjectStorage,
    reporter: Reporter,
) -> None:
    """Upload the generator, then mark the job succeeded and register the model in one commit."""
    model_id = new_id("mdl")
    for name, data in export_files(trainer, result).items():
        content_type = CONTENT_TYPES.get(Path(name).suffix, "application/octet-stream")
        storage.put_bytes(model_prefix(model_id) + name, data, content_type)
    summary = result.summary or reporter.latest_metrics  # resumed at the last step: no eval
    conditional = spec.model.conditioning != "none"
    with session_scope(sessions) as session:
        model = succeed_job(
            session,
            job_id=job_id,
            worker_id=reporter.worker_id,
            model_id=model_id,
            class_names=dataset.class_names if conditional else None,
            image_shape=image_shape(dataset),
            summary=_json_safe(summary),
            step=result.step,
        )
    if model is None:  # the job was taken from us while uploading
        storage.delete_prefix(model_prefix(model_id))
        reporter.lease_lost = True


def image_shape(dataset: Dataset) -> list[int]:
    """``[H, W, C]`` for images (the datasets table's convention), ``[2]`` for points."""
    shape = list(dataset.sample_shape)
    if len(shape) == 3:
        channels, height, width = shape
        return [height, width, channels]
    return shape


def _json_safe(metrics: dict[str, float]) -> dict[str, Any]:
    return {name: finite_or_none(value) for name, value in metrics.items()}


def resolve_dataset(
    spec: Spec,
    *,
    tenant_id: str,
    settings: Settings,
    storage: ObjectStorage,
    sessions: sessionmaker[Session],
) -> Dataset:
    """The spec's training data. An uploaded dataset must still exist and belong to the job's
    tenant; its pack is downloaded to a temporary file that is deleted once loaded."""
    try:
        if spec.dataset.id is None:
            return load_training_data(spec, data_dir=settings.ganforge_data_dir)[1]
        dataset_id = spec.dataset.id
        with session_scope(sessions) as session:
            row = session.scalar(
                select(DatasetRow).where(
                    DatasetRow.id == dataset_id, DatasetRow.tenant_id == tenant_id
                )
            )
            key = row.storage_key if row is not None else None
        if key is None:
            raise DatasetError(
                f"dataset {dataset_id} does not exist (was it deleted?); upload it again and "
                "submit a new job"
            )
        with tempfile.TemporaryDirectory(prefix="ganforge-dataset-") as folder:
            path = Path(folder) / "pack.npz"
            try:
                storage.get_file(key, path)
            except StorageKeyNotFound:
                raise DatasetError(
                    f"the data of dataset {dataset_id} is missing from storage "
                    f"({dataset_pack_key(dataset_id)}); upload it again"
                ) from None
            return load_training_data(spec, data_dir=settings.ganforge_data_dir, pack_path=path)[1]
    except DatasetError as error:
        raise JobFailed(DATASET_ERROR, str(error)) from None


def resume(
    trainer: Trainer,
    *,
    job_id: str,
    sessions: sessionmaker[Session],
    storage: ObjectStorage,
    reporter: Reporter,
) -> int | None:
    """Load the job's newest checkpoint into ``trainer``; returns its step (None: fresh start)."""
    with session_scope(sessions) as session:
        checkpoint = latest_checkpoint(session, job_id=job_id)
        found = None if checkpoint is None else (checkpoint.step, checkpoint.storage_key)
    if found is None:
        return None
    step, key = found
    try:
        trainer.load_state_dict(load_checkpoint(storage.get_bytes(key)))
    except (CheckpointError, StorageKeyNotFound) as error:
        raise JobFailed(
            CHECKPOINT_ERROR, f"cannot resume from the checkpoint at step {step}: {error}"
        ) from None
    reporter.step = trainer.step
    reporter.event("resumed", f"resumed from step {trainer.step}", step=trainer.step)
    return trainer.step
