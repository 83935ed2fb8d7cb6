"""What a run ends with: an ``Outcome``, the error codes of failed jobs, and why a run stopped."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Final

from store.jobs import WORKER_LOST as WORKER_LOST  # set by the store: the retry budget is spent
from store.models import JobStatus

# Outcomes that are not a job status: nothing was written to the job's status.
NOT_CLAIMED: Final = "not_claimed"  # a duplicate delivery, or the job is not claimable
LEASE_LOST: Final = "lease_lost"  # the job was taken away mid-run; nothing more was written
SHUTTING_DOWN: Final = "shutting_down"  # the worker is stopping: it claims nothing more

# Error codes of failed jobs (jobs.error_code); README "How a job ends" explains each.
INVALID_SPEC: Final = "invalid_spec"
DATASET_ERROR: Final = "dataset_error"
CHECKPOINT_ERROR: Final = "checkpoint_error"
DIVERGED: Final = "diverged"
MAX_RUNTIME_EXCEEDED: Final = "max_runtime_exceeded"
OUT_OF_MEMORY: Final = "out_of_memory"  # CUDA ran out of memory
MEMORY_EXCEEDED: Final = "memory_exceeded"  # the job needs or grew past MAX_JOB_MEMORY_BYTES
STORAGE_UNAVAILABLE: Final = "storage_unavailable"  # object storage failed after bounded tries
INTERNAL_ERROR: Final = "internal_error"


class StopReason(StrEnum):
    """Why the worker asked the trainer to stop before its last step."""

    LEASE_LOST = "lease_lost"  # the job is no longer ours: write nothing more
    CANCELLED = "cancelled"  # a cancel was requested
    PAUSED = "paused"  # a pause was requested: checkpoint, leave the job paused
    MEMORY_EXCEEDED = "memory_exceeded"  # the process grew past MAX_JOB_MEMORY_BYTES
    SHUTDOWN = "shutdown"  # the worker is shutting down: hand the job back


@dataclass(frozen=True)
class Outcome:
    """How ``run_job`` left a job.

    ``status``: the job's status (a ``JobStatus``) or ``NOT_CLAIMED``, ``LEASE_LOST``,
    ``SHUTTING_DOWN``. ``error_code`` and ``message`` of a failed job are its error; the message of
    another outcome is a note (why an interrupted job was handed back). ``step``: where it stopped.
    ``job_id``: the job it trained (the message's own job when nothing was claimed).
    """

    status: str
    error_code: str | None = None
    message: str | None = None
    step: int | None = None
    job_id: str | None = None

    @classmethod
    def failed(cls, code: str, message: str, step: int | None = None) -> Outcome:
        return cls(JobStatus.FAILED, code, message, step)

    @property
    def is_failure(self) -> bool:
        return self.status == JobStatus.FAILED


class JobFailed(Exception):
    """Ends the job as failed with ``code``; the message is shown to the user."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
