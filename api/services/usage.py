"""What an account uses: stored bytes by kind and the worker time its jobs took, and the optional
storage quota (``MAX_STORAGE_BYTES_PER_TENANT``) that refuses new data past it."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Select, func, select
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.orm import Session

from store.errors import LimitExceeded
from store.models import Checkpoint, Dataset, Job, JobStatus, Sample, TrainedModel, utcnow


@dataclass(frozen=True)
class Usage:
    datasets_bytes: int
    samples_bytes: int
    checkpoints_bytes: int
    models_bytes: int
    job_seconds: float
    quota_bytes: int | None

    @property
    def total_bytes(self) -> int:
        return self.datasets_bytes + self.samples_bytes + self.checkpoints_bytes + self.models_bytes


def _bytes_statements(tenant_id: str) -> dict[str, Select[tuple[int]]]:
    """One SUM a kind (rows stored before sizes were recorded count 0)."""
    of_jobs = select(Job.id).where(Job.tenant_id == tenant_id)
    return {
        "datasets_bytes": select(func.coalesce(func.sum(Dataset.size_bytes), 0)).where(
            Dataset.tenant_id == tenant_id
        ),
        "samples_bytes": select(func.coalesce(func.sum(Sample.size_bytes), 0)).where(
            Sample.job_id.in_(of_jobs)
        ),
        "checkpoints_bytes": select(func.coalesce(func.sum(Checkpoint.size_bytes), 0)).where(
            Checkpoint.job_id.in_(of_jobs)
        ),
        "models_bytes": select(func.coalesce(func.sum(TrainedModel.size_bytes), 0)).where(
            TrainedModel.tenant_id == tenant_id
        ),
    }


def usage_of(session: Session, *, tenant_id: str, quota_bytes: int | None) -> Usage:
    sizes = {kind: int(session.scalar(q) or 0) for kind, q in _bytes_statements(tenant_id).items()}
    done = session.scalar(
        select(func.coalesce(func.sum(Job.run_seconds), 0.0)).where(Job.tenant_id == tenant_id)
    )
    running = session.scalars(
        select(Job.running_since).where(
            Job.tenant_id == tenant_id,
            Job.status == JobStatus.RUNNING,
            Job.running_since.is_not(None),
        )
    )
    now = utcnow()
    current = sum(max(0.0, (now - since).total_seconds()) for since in running)
    return Usage(**sizes, job_seconds=float(done or 0.0) + current, quota_bytes=quota_bytes)


def _refusal(used: int, quota_bytes: int) -> LimitExceeded:
    return LimitExceeded(
        f"this account stores {used:,} bytes, at or past its quota of {quota_bytes:,}; delete "
        "datasets, jobs or models (GET /v1/usage shows what is stored)",
        code="quota_exceeded",
    )


def check_quota(session: Session, *, tenant_id: str, quota_bytes: int | None) -> None:
    """New data is refused once the account's stored bytes reach the quota."""
    if quota_bytes is None:
        return
    used = usage_of(session, tenant_id=tenant_id, quota_bytes=quota_bytes).total_bytes
    if used >= quota_bytes:
        raise _refusal(used, quota_bytes)


async def check_quota_async(
    connection: AsyncConnection, *, tenant_id: str, quota_bytes: int | None
) -> None:
    """``check_quota`` on the submission path's asyncio connection."""
    if quota_bytes is None:
        return
    used = 0
    for statement in _bytes_statements(tenant_id).values():
        used += int((await connection.execute(statement)).scalar() or 0)
    if used >= quota_bytes:
        raise _refusal(used, quota_bytes)
