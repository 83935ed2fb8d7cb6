"""The job lifecycle (DESIGN.md §4), shared by the API, the worker and the reaper.

Postgres is the truth, the broker only a trigger: every status change is one conditional UPDATE
(compare-and-set on the row), so a message delivered twice trains once and a lost worker cannot
overwrite the job's next owner. Every status change a job can make is a row of the transition
table below, and all of them go through ``_transition``: the compare-and-set plus its ``job_events``
row (code ``status``).

Functions flush and never commit: the caller owns the transaction (``store.db.session_scope``) and
should keep it short. No savepoints are used (pysqlite's are unreliable); idempotent inserts use the
dialect's ``INSERT ... ON CONFLICT``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Generator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import cache
from typing import Any, Final, Literal, Protocol

from sqlalchemy import (
    Executable,
    Result,
    Row,
    Select,
    bindparam,
    delete,
    func,
    literal,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.orm import Session

from store import webhooks
from store.db import rowcount
from store.errors import Conflict, LimitExceeded, NotFound
from store.labels import Labels
from store.models import (
    ACTIVE_STATUSES,
    CLAIMABLE_STATUSES,
    EVENT_LEVELS,
    FINISHED_STATUSES,
    Checkpoint,
    EventLevel,
    Job,
    JobEvent,
    JobPhase,
    JobStatus,
    Metric,
    Sample,
    Tenant,
    TrainedModel,
    UTCDateTime,
    WebhookEvent,
    finite_or_none,
    new_id,
    utcnow,
)
from store.queue import train_queue
from store.settings import DEFAULT_MAX_ATTEMPTS
from store.storage import model_prefix

STATUS = "status"  # the event code of every status change
WORKER_LOST = "worker_lost"  # the error code of a job whose retry budget (MAX_ATTEMPTS) is spent
MAX_MESSAGE_CHARS = 10_000
NO_SYNC = {"synchronize_session": False}


class ResolvedSpec(Protocol):
    """What the store accepts as a job's spec: a validated ``gan_engine.spec.Spec`` (the store
    imports nothing of the engine), whose every default and ``auto`` is resolved. A plain dict,
    which could be half-read, is not accepted."""

    @property
    def needs_image_size(self) -> bool: ...

    def to_dict(self) -> dict[str, Any]: ...


@dataclass(frozen=True)
class Heartbeat:
    """What a heartbeat found. Truthy when the worker should keep training."""

    # False: the job is no longer ours (reaped, re-claimed or finished): stop, write nothing.
    owned: bool
    # True: finish the job as cancelled.
    cancel_requested: bool
    # True: checkpoint and finish the job as paused.
    pause_requested: bool = False

    def __bool__(self) -> bool:
        return self.owned and not self.cancel_requested and not self.pause_requested


# --- the transition table ----------------------------------------------------------------------


@dataclass(frozen=True)
class Transition:
    """A kind of status change: from one of ``sources`` to ``target``; sets the timestamp column
    ``stamp`` to now (``started_at`` only the first time) and writes a status event at ``level``.
    Leaving ``running`` clears the lease."""

    sources: tuple[JobStatus, ...]
    target: JobStatus
    stamp: str
    level: str


_S = JobStatus
_RUNNING: Final = (_S.RUNNING,)
_PAUSED: Final = (_S.PAUSED,)
_ANY_ACTIVE: Final = (*_RUNNING, *CLAIMABLE_STATUSES)

# Every status change a job can make. The worker claims, succeeds, fails, stops as cancelled or
# paused and hands back; the API cancels or pauses a job that is not running and resumes a
# paused one; the reaper (or a claim that finds an expired lease) loses a worker, and gives up
# once MAX_ATTEMPTS attempts lost theirs.
# fmt: off
#                                  from                   to              stamp          level
CLAIM: Final =          Transition(CLAIMABLE_STATUSES,    _S.RUNNING,     "started_at",  "info")
SUCCEED: Final =        Transition(_RUNNING,              _S.SUCCEEDED,   "finished_at", "info")
FAIL: Final =           Transition(_RUNNING,              _S.FAILED,      "finished_at", "error")
STOP_CANCELLED: Final = Transition(_RUNNING,              _S.CANCELLED,   "finished_at", "info")
STOP_PAUSED: Final =    Transition(_RUNNING,              _S.PAUSED,      "updated_at",  "info")
HAND_BACK: Final =      Transition(_RUNNING,              _S.INTERRUPTED, "enqueued_at", "info")
CANCEL: Final =         Transition((*CLAIMABLE_STATUSES, *_PAUSED), _S.CANCELLED, "finished_at",
                                   "info")
PAUSE: Final =          Transition(CLAIMABLE_STATUSES,    _S.PAUSED,      "updated_at",  "info")
RESUME: Final =         Transition(_PAUSED,               _S.QUEUED,      "enqueued_at", "info")
LOSE: Final =           Transition(_RUNNING,              _S.INTERRUPTED, "enqueued_at", "warning")
LOSE_CANCELLED: Final = Transition(_RUNNING,              _S.CANCELLED,   "finished_at", "warning")
LOSE_PAUSED: Final =    Transition(_RUNNING,              _S.PAUSED,      "updated_at",  "warning")
GIVE_UP: Final =        Transition(_ANY_ACTIVE,           _S.FAILED,      "finished_at", "error")
# fmt: on

# What ``finish_job`` does for each status a worker may leave its job in.
_FINISH: Final = {
    JobStatus.SUCCEEDED: SUCCEED,
    JobStatus.FAILED: FAIL,
    JobStatus.CANCELLED: STOP_CANCELLED,
    JobStatus.PAUSED: STOP_PAUSED,
    JobStatus.INTERRUPTED: HAND_BACK,
}


def _transition(
    session: Session,
    move: Transition,
    *,
    job_id: str,
    current: str,
    where: Sequence[Any] = (),
    values: Mapping[str, Any] | None = None,
    detail: str = "",
    step: int | None = None,
    now: datetime | None = None,
) -> bool:
    """Move job ``job_id`` from status ``current`` to ``move.target`` if it is still ``current``
    and every condition in ``where`` still holds (one conditional UPDATE, also setting
    ``values``), then write the status event ``"{current} → {target}{detail}"``. False, and
    nothing written, if the row changed meanwhile."""
    if current not in move.sources:
        raise ValueError(f"no transition from {current!r} to {str(move.target)!r}")
    now = now or utcnow()
    sets: dict[str, Any] = {"status": move.target, "updated_at": now}
    first_time = move.stamp == "started_at"
    sets[move.stamp] = func.coalesce(Job.started_at, _at(now)) if first_time else now
    if move.target == JobStatus.RUNNING:
        sets["running_since"] = now
    else:
        sets["lease_expires_at"] = None
    if current == JobStatus.RUNNING:
        since = session.scalar(select(Job.running_since).where(Job.id == job_id))
        held_s = max(0.0, (now - since).total_seconds()) if since is not None else 0.0
        sets.update(running_since=None, run_seconds=Job.run_seconds + held_s)
    sets.update(values or {})
    if not _set(session, Job.id == job_id, Job.status == current, *where, **sets):
        return False
    message = f"{current} → {move.target}{detail}"[:MAX_MESSAGE_CHARS]
    status_event = record_event(
        session, job_id=job_id, step=step, level=move.level, code=STATUS, message=message
    )
    told = _STATUS_WEBHOOKS.get(move.target)
    if told is not None:
        config = webhooks.webhook_of(session, job_id)
        webhooks.notify(session, job_id=job_id, event=told, config=config, job_event=status_event)
    return True


# The webhook event a status change tells (WebhookEvent.WARNING comes from events' levels).
_STATUS_WEBHOOKS: Final = {
    JobStatus.RUNNING: WebhookEvent.STARTED,
    **{status: WebhookEvent.COMPLETED for status in FINISHED_STATUSES},
}


def _insert(session: Session) -> Callable[..., Any]:
    """The dialect's ``insert`` (it has ``on_conflict_do_*``)."""
    return _dialect_insert(session.get_bind().dialect.name)


def _dialect_insert(dialect: str) -> Callable[..., Any]:
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    elif dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert
    else:  # pragma: no cover
        raise NotImplementedError(f"database {dialect!r} is not supported")
    return insert


def _canonical(spec: Mapping[str, Any]) -> str:
    return json.dumps(spec, sort_keys=True, separators=(",", ":"))


def _at(now: datetime) -> Any:
    return literal(now, UTCDateTime())


def _set(session: Session, *where: Any, **values: Any) -> bool:
    """``UPDATE jobs SET values WHERE where``; True if a row matched."""
    statement = update(Job).where(*where).values(**values).execution_options(**NO_SYNC)
    return rowcount(session.execute(statement)) > 0


# --- reading -----------------------------------------------------------------------------------


def get_job(session: Session, *, job_id: str, tenant_id: str | None = None) -> Job:
    """The job, fresh from the database; another tenant's job is ``NotFound``."""
    query = select(Job).where(Job.id == job_id).execution_options(populate_existing=True)
    if tenant_id is not None:
        query = query.where(Job.tenant_id == tenant_id)
    job = session.scalar(query)
    if job is None:
        raise NotFound(f"job {job_id} not found")
    return job


def count_active_jobs(session: Session, *, tenant_id: str) -> int:
    """Queued, running and interrupted jobs of a tenant."""
    query = select(func.count()).where(Job.tenant_id == tenant_id, Job.status.in_(ACTIVE_STATUSES))
    return int(session.scalar(query) or 0)


def queues_of(session: Session, *, job_ids: Sequence[str]) -> dict[str, str]:
    """The training queue of each of ``job_ids`` (those that exist)."""
    if not job_ids:
        return {}
    rows = session.execute(select(Job.id, Job.queue).where(Job.id.in_(list(job_ids))))
    return {job_id: queue for job_id, queue in rows}


def latest_checkpoint(session: Session, *, job_id: str) -> Checkpoint | None:
    query = select(Checkpoint).where(Checkpoint.job_id == job_id)
    return session.scalar(query.order_by(Checkpoint.step.desc()).limit(1))


# --- the API side ------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Step:
    """One statement of a write made of several, and what of its result the write needs."""

    statement: Executable
    fetch: Literal["nothing", "scalar", "row"] = "nothing"
    params: Mapping[str, Any] = field(default_factory=dict)

    def result_of(self, result: Result[Any]) -> Any:
        if self.fetch == "scalar":
            return result.scalar_one_or_none()
        if self.fetch == "row":
            return result.one_or_none()
        return None


JobCreation = Generator[_Step, Any, tuple[Job, bool]]


def create_job(
    session: Session,
    *,
    tenant_id: str,
    spec: ResolvedSpec,
    idempotency_key: str | None = None,
    max_active: int | None = None,
    continued_from: str | None = None,
    labels: Labels | None = None,
    webhook: Mapping[str, Any] | None = None,
) -> tuple[Job, bool]:
    """Record a queued job for a resolved spec (and its webhook: ``store.webhooks``). Returns
    ``(job, created)``.

    With an ``idempotency_key`` already used by this tenant: the same spec returns the existing
    job (``created`` False), a different spec raises ``Conflict``. ``max_active`` (queued + running
    + interrupted) raises ``LimitExceeded`` for a new job; a replayed key never does. The job
    returned is built from the row's values, not attached to the session.
    """
    steps = _job_creation(session.get_bind().dialect.name, tenant_id, spec, idempotency_key,
                          max_active, continued_from, labels, webhook)  # fmt: skip
    answer = None
    try:
        while True:
            step = steps.send(answer)
            answer = step.result_of(session.execute(step.statement, dict(step.params)))
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]


async def create_job_async(
    connection: AsyncConnection,
    *,
    tenant_id: str,
    spec: ResolvedSpec,
    idempotency_key: str | None = None,
    max_active: int | None = None,
    labels: Labels | None = None,
    webhook: Mapping[str, Any] | None = None,
) -> tuple[Job, bool]:
    """``create_job`` on an asyncio connection (the API's submissions: no thread, no ORM)."""
    steps = _job_creation(
        connection.dialect.name,
        tenant_id,
        spec,
        idempotency_key,
        max_active,
        None,
        labels,
        webhook,
    )
    answer = None
    try:
        while True:
            step = steps.send(answer)
            answer = step.result_of(await connection.execute(step.statement, dict(step.params)))
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]


def _job_creation(
    dialect: str,
    tenant_id: str,
    spec: ResolvedSpec,
    idempotency_key: str | None,
    max_active: int | None,
    continued_from: str | None = None,
    labels: Labels | None = None,
    webhook: Mapping[str, Any] | None = None,
) -> JobCreation:
    """The statements that record a job, in order; each step is sent its result back. Written
    once, run by ``create_job`` on a Session and by ``create_job_async`` on an asyncio
    connection."""
    if isinstance(spec, dict) or spec.needs_image_size:
        raise TypeError("create_job takes a validated Spec whose image size is resolved")
    spec_data = spec.to_dict()
    statements = _creation_statements(dialect)
    by_key = {"tenant_id": tenant_id, "key": idempotency_key}
    if idempotency_key is not None:
        existing = yield _Step(statements.job_by_key, "row", by_key)
        if existing is not None:
            return _same_spec_or_conflict(_job_of(existing), spec_data, idempotency_key), False
    total_steps = int((spec_data.get("training") or {}).get("steps") or 0)
    if total_steps <= 0:
        raise ValueError("spec.training.steps must be a positive integer")
    now = utcnow()
    job_id = new_id("job")
    values: dict[str, Any] = {
        "id": job_id,
        "tenant_id": tenant_id,
        "spec": spec_data,
        "dataset_id": (spec_data.get("dataset") or {}).get("id"),
        "status": JobStatus.QUEUED,
        "queue": train_queue(spec_data),
        "step": 0,
        "total_steps": total_steps,
        "attempt": 0,
        "workers_lost": 0,
        "cancel_requested": False,
        "pause_requested": False,
        "continued_from": continued_from,
        "idempotency_key": idempotency_key,
        "name": labels.name if labels else None,
        "tags": list(labels.tags) if labels else [],
        "metadata": dict(labels.metadata) if labels else {},
        "webhook": dict(webhook) if webhook else None,
        "latest_metrics": {},
        "event_seq": 1,  # its first event, "created → queued", is written below with seq 1
        "created_at": now,
        "enqueued_at": now,
        "updated_at": now,
    }
    assert set(values) == set(NEW_JOB_COLUMNS)
    inserted = yield _Step(statements.insert_job, "scalar", values)
    if inserted is None:  # a concurrent request with the same key won
        assert idempotency_key is not None
        existing = yield _Step(statements.job_by_key, "row", by_key)
        assert existing is not None
        return _same_spec_or_conflict(_job_of(existing), spec_data, idempotency_key), False
    first_event = {"job_id": job_id, "seq": 1, "level": EventLevel.INFO, "code": STATUS,
                   "message": f"created → {JobStatus.QUEUED}", "created_at": now}  # fmt: skip
    yield _Step(statements.insert_event, "nothing", first_event)
    if max_active is not None:
        # After the insert: one submission of a tenant at a time counts its active jobs, the
        # new one included (a lock on the tenant's row, held to the commit), so a burst cannot
        # slip past the limit; taken last, it is held only for the count and the commit, and
        # other tenants never wait for it. NO KEY UPDATE serialises submissions yet does not
        # wait on the KEY SHARE lock the insert took (a foreign key), as FOR UPDATE would: a
        # deadlock. (SQLite writes one at a time anyway.)
        yield _Step(statements.lock_tenant, "nothing", {"tenant_id": tenant_id})
        active = yield _Step(statements.count_active, "scalar", {"tenant_id": tenant_id})
        if active > max_active:  # leave the caller's transaction as it found it
            yield _Step(statements.delete_events, "nothing", {"job_id": job_id})
            yield _Step(statements.delete_job, "nothing", {"job_id": job_id})
            raise LimitExceeded(
                f"this account already has {max_active} queued or running jobs (the limit); "
                "wait for one to finish or cancel one"
            )
    return _job_of_columns(values), True


# What a new job's row is written with; the other columns start NULL.
NEW_JOB_COLUMNS: Final = ("id", "tenant_id", "spec", "dataset_id", "status", "queue", "step",
                          "total_steps", "attempt", "workers_lost", "cancel_requested",
                          "pause_requested", "continued_from", "idempotency_key", "name",
                          "tags", "metadata", "webhook", "latest_metrics", "event_seq",
                          "created_at", "enqueued_at", "updated_at")  # fmt: skip


@dataclass(frozen=True)
class _CreationStatements:
    """Built once per dialect with bound parameters: SQLAlchemy then reuses their compiled SQL
    and never rebuilds their cache keys (building the insert's 16 values was a tenth of a
    submission's time)."""

    job_by_key: Select[Any]
    insert_job: Executable
    insert_event: Executable
    lock_tenant: Select[Any]
    count_active: Select[Any]
    delete_events: Executable
    delete_job: Executable


@cache
def _creation_statements(dialect: str) -> _CreationStatements:
    insert = _dialect_insert(dialect)
    jobs, events = Job.__table__, JobEvent.__table__
    insert_job = insert(jobs).values({name: bindparam(name) for name in NEW_JOB_COLUMNS})
    return _CreationStatements(
        job_by_key=select(*jobs.columns).where(
            Job.tenant_id == bindparam("tenant_id"), Job.idempotency_key == bindparam("key")
        ),
        # RETURNING, not rowcount: psycopg reports -1 for this INSERT
        insert_job=insert_job.on_conflict_do_nothing(
            index_elements=["tenant_id", "idempotency_key"]
        ).returning(Job.id),
        insert_event=insert(events).values(
            {c: bindparam(c) for c in ("job_id", "seq", "level", "code", "message", "created_at")}
        ),
        lock_tenant=select(Tenant.id)
        .where(Tenant.id == bindparam("tenant_id"))
        .with_for_update(key_share=True),
        count_active=select(func.count()).where(
            Job.tenant_id == bindparam("tenant_id"), Job.status.in_(ACTIVE_STATUSES)
        ),
        delete_events=delete(JobEvent).where(JobEvent.job_id == bindparam("job_id")),
        delete_job=delete(Job).where(Job.id == bindparam("job_id")),
    )


def _job_of(row: Row[Any]) -> Job:
    return _job_of_columns(row._mapping)


def _job_of_columns(values: Mapping[str, Any]) -> Job:
    """A detached Job from column values (the ``metadata`` column is the ``metadata_``
    attribute)."""
    columns = dict(values)
    columns["metadata_"] = columns.pop("metadata", {})
    return Job(**columns)


def _same_spec_or_conflict(job: Job, spec: Mapping[str, Any], key: str) -> Job:
    if _canonical(job.spec) != _canonical(spec):
        raise Conflict(
            f"Idempotency-Key {key!r} was already used for job {job.id} with a different spec; "
            "use a new key for a new job"
        )
    return job


def request_cancel(session: Session, *, job_id: str, tenant_id: str) -> Job:
    """Cancel a job. Queued or interrupted: cancelled now. Running: flagged; the worker sees the
    flag at its next heartbeat and finishes the job as cancelled (a repeated request is a no-op).
    Already finished: ``Conflict``."""
    for _ in range(5):  # the job may change state under us; each pass is a compare-and-set
        job = get_job(session, job_id=job_id, tenant_id=tenant_id)
        status = job.status
        if status in FINISHED_STATUSES:
            raise Conflict(
                f"job {job_id} is already {status}; only queued, interrupted, running or paused "
                "jobs can be cancelled"
            )
        if status == JobStatus.RUNNING:
            if job.cancel_requested:
                return job
            running = (Job.id == job_id, Job.status == status)
            if _set(session, *running, cancel_requested=True, updated_at=utcnow()):
                record_event(
                    session,
                    job_id=job_id,
                    step=job.step,
                    code="cancel_requested",
                    message="cancel requested; the worker stops at its next heartbeat",
                )
                return get_job(session, job_id=job_id)
        elif _transition(
            session,
            CANCEL,
            job_id=job_id,
            current=status,
            values={"cancel_requested": True},
            step=job.step,
        ):
            return get_job(session, job_id=job_id)
    raise Conflict(f"job {job_id} kept changing state; try again")


def request_pause(session: Session, *, job_id: str, tenant_id: str) -> Job:
    """Pause a job. Queued or interrupted: paused now (it keeps its checkpoints). Running:
    flagged; its worker checkpoints at its next heartbeat and leaves the job ``paused``, freeing
    itself. Already paused, or pausing: a no-op. Finished: ``Conflict``."""
    for _ in range(5):  # a compare-and-set per pass, as request_cancel
        job = get_job(session, job_id=job_id, tenant_id=tenant_id)
        status = job.status
        if status in FINISHED_STATUSES:
            raise Conflict(f"job {job_id} is already {status}; only unfinished jobs can pause")
        if status == JobStatus.PAUSED or (status == JobStatus.RUNNING and job.pause_requested):
            return job
        if status == JobStatus.RUNNING:
            running = (Job.id == job_id, Job.status == status)
            if _set(session, *running, pause_requested=True, updated_at=utcnow()):
                record_event(
                    session, job_id=job_id, step=job.step, code="pause_requested",
                    message="pause requested; the worker checkpoints and stops at its next "
                    "heartbeat",
                )  # fmt: skip
                return get_job(session, job_id=job_id)
        elif _transition(session, PAUSE, job_id=job_id, current=status, step=job.step):
            return get_job(session, job_id=job_id)
    raise Conflict(f"job {job_id} kept changing state; try again")


def resume_job(
    session: Session, *, job_id: str, tenant_id: str, max_active: int | None = None
) -> tuple[Job, bool]:
    """Resume a paused job: queued again (it resumes from its newest checkpoint), ``True`` when
    the caller must enqueue it. A running job whose pause is still pending keeps running (the
    request withdrawn). Queued or running: a no-op. Finished: ``Conflict``. ``max_active``: the
    concurrent-job limit, which a resumed job counts against (``LimitExceeded``)."""
    for _ in range(5):
        job = get_job(session, job_id=job_id, tenant_id=tenant_id)
        status = job.status
        if status in FINISHED_STATUSES:
            raise Conflict(f"job {job_id} is already {status}; only a paused job can resume")
        if status == JobStatus.RUNNING and job.pause_requested:
            running = (Job.id == job_id, Job.status == status, Job.pause_requested.is_(True))
            if _set(session, *running, pause_requested=False, updated_at=utcnow()):
                record_event(
                    session, job_id=job_id, step=job.step, code="pause_withdrawn",
                    message="resumed before the pause took effect; it keeps running",
                )  # fmt: skip
                return get_job(session, job_id=job_id), False
            continue
        if status != JobStatus.PAUSED:
            return job, False
        if max_active is not None:
            tenant = select(Tenant.id).where(Tenant.id == tenant_id)
            session.execute(tenant.with_for_update(key_share=True))  # as create_job
            if count_active_jobs(session, tenant_id=tenant_id) >= max_active:
                raise LimitExceeded(
                    f"this account already has {max_active} queued or running jobs (the limit); "
                    "resume this one when one of them has finished"
                )
        if _transition(
            session, RESUME, job_id=job_id, current=status, step=job.step,
            values={"pause_requested": False},
        ):  # fmt: skip
            return get_job(session, job_id=job_id), True
    raise Conflict(f"job {job_id} kept changing state; try again")


# --- the worker side ---------------------------------------------------------------------------


_LEASE_COLUMNS: Final = select(
    Job.id,
    Job.status,
    Job.attempt,
    Job.workers_lost,
    Job.worker_id,
    Job.lease_expires_at,
    Job.cancel_requested,
    Job.pause_requested,
    Job.step,
)
_WORKER_LOST_ADVICE: Final = (
    "A job that keeps losing its worker may be crashing it (out of memory: lower "
    "training.batch_size or model.width); its checkpoints are kept"
)


def _lose_worker(
    session: Session, job: Row[Any], *, now: datetime, max_attempts: int
) -> JobStatus | None:
    """The running ``job``'s lease expired at ``now``: its worker is presumed lost. The job is
    ``cancelled`` if a cancel was requested, ``paused`` if a pause was (it resumes from its newest
    checkpoint), ``failed`` (``worker_lost``) if this was the ``max_attempts``-th attempt to lose
    its worker, else ``interrupted`` (to re-enqueue). Returns the new status; None if the row
    changed meanwhile."""
    lost = job.workers_lost + 1
    values: dict[str, Any] = {"workers_lost": lost}
    detail = f" (lease expired; worker {job.worker_id} lost)"
    if job.cancel_requested:
        move = LOSE_CANCELLED
    elif job.pause_requested:
        move = LOSE_PAUSED
    elif lost >= max_attempts:
        move = GIVE_UP
        message = (
            f"its worker was lost on {lost} attempts (the last was attempt {job.attempt}); "
            f"MAX_ATTEMPTS is {max_attempts}, so it is not run again. {_WORKER_LOST_ADVICE}"
        )
        values |= {"error_code": WORKER_LOST, "error_message": message}
        detail += f": {WORKER_LOST}: {message}"
    else:
        move = LOSE
    still_expired = (Job.lease_expires_at < _at(now), Job.workers_lost == job.workers_lost)
    moved = _transition(
        session,
        move,
        job_id=job.id,
        current=JobStatus.RUNNING,
        where=still_expired,
        values=values,
        detail=detail,
        step=job.step,
        now=now,
    )
    return move.target if moved else None


def claim_job(
    session: Session,
    *,
    job_id: str,
    worker_id: str,
    lease_s: float,
    max_attempts: int = DEFAULT_MAX_ATTEMPTS,
) -> Job | None:
    """Take a queued or interrupted job: one conditional UPDATE, so of several workers racing on
    one job exactly one wins. None: someone else has it, it is finished or cancelled, or its
    retry budget is spent.

    The retry budget: a job whose worker was lost on ``max_attempts`` attempts ends ``failed``
    with ``worker_lost`` instead of being claimed again (a job stored under a larger budget). A
    running job whose lease expired, which no reaper has seen yet, is lost here as the reaper
    would (``_lose_worker``) and then claimed if it may run again.

    ``worker_id`` should be unique per task run (host, pid and a random part): it is the token that
    later heartbeats and ``finish_job`` must present. Commit right after claiming.
    """
    row = session.execute(_LEASE_COLUMNS.where(Job.id == job_id)).one_or_none()
    if row is None:
        return None
    status, lost = row.status, row.workers_lost
    if status == JobStatus.RUNNING:
        now = utcnow()
        if row.lease_expires_at is None or row.lease_expires_at >= now:
            return None  # its worker holds the lease: a duplicate delivery
        status = _lose_worker(session, row, now=now, max_attempts=max_attempts)
        lost += 1
    if status not in CLAIMABLE_STATUSES:
        return None
    if lost >= max_attempts:
        message = (
            f"its worker was lost on {lost} attempts already and MAX_ATTEMPTS is {max_attempts}; "
            f"it is not run again. {_WORKER_LOST_ADVICE}"
        )
        _transition(
            session,
            GIVE_UP,
            job_id=job_id,
            current=status,
            where=(Job.workers_lost == lost,),
            values={"error_code": WORKER_LOST, "error_message": message},
            detail=f": {WORKER_LOST}: {message}",
            step=row.step,
        )
        return None
    now = utcnow()
    attempt = row.attempt + 1
    claimed = _transition(
        session,
        CLAIM,
        job_id=job_id,
        current=status,
        where=(Job.attempt == row.attempt, Job.cancel_requested.is_(False)),
        values={
            "attempt": attempt,
            "worker_id": worker_id,
            "lease_expires_at": now + timedelta(seconds=lease_s),
            "phase": JobPhase.TRAINING,
            "eta_s": None,
        },
        detail=f" (attempt {attempt})",
        now=now,
    )
    return get_job(session, job_id=job_id) if claimed else None


# --- the fair claim ------------------------------------------------------------------------------
#
# A worker's message is a trigger, not an assignment: it claims the fairest claimable job of the
# message's queue, which is not necessarily the message's own job. The fairness rule: the tenant
# with the fewest running jobs in the queue goes first; among equals, the one whose last job
# started longest ago (a tenant never served, first); within the tenant, its oldest job. So a
# tenant's burst of 50 jobs takes one worker at a time in turn with every other waiting tenant,
# never all of them. No job is lost: each message still makes one claim (while any job waits),
# and every claimable job was sent a message of its own; none runs twice: the claim is
# ``claim_job``'s conditional UPDATE.

_WAITING: Final = (Job.status.in_(CLAIMABLE_STATUSES), Job.cancel_requested.is_(False))
MAX_CLAIM_RACES = 20  # candidates a claim may lose to other workers before giving up


def fairest_job(session: Session, *, queue: str, skip: Sequence[str] = ()) -> str | None:
    """The id of the claimable job of ``queue`` that the fairness rule serves next (not in
    ``skip``); None if none waits. Two reads: the tenant (its load computed once for each tenant
    with a job waiting, not for each waiting job), then that tenant's oldest waiting job."""
    waiting = [Job.queue == queue, *_WAITING]
    if skip:
        waiting.append(Job.id.not_in(list(skip)))
    tenants = select(Job.tenant_id).where(*waiting).distinct().subquery("waiting_tenants")
    others = Job.__table__.alias("others")
    of_tenant = (others.c.queue == queue, others.c.tenant_id == tenants.c.tenant_id)
    running = select(func.count()).where(*of_tenant, others.c.status == JobStatus.RUNNING)
    last_started = select(func.max(others.c.started_at)).where(*of_tenant)
    oldest = select(func.min(Job.created_at)).where(*waiting, Job.tenant_id == tenants.c.tenant_id)
    tenant = session.scalar(
        select(tenants.c.tenant_id)
        .order_by(
            running.scalar_subquery(),
            last_started.scalar_subquery().asc().nulls_first(),
            oldest.scalar_subquery(),
            tenants.c.tenant_id,
        )
        .limit(1)
    )
    if tenant is None:
        return None
    first = select(Job.id).where(*waiting, Job.tenant_id == tenant)
    return session.scalar(first.order_by(Job.created_at, Job.id).limit(1))


def claim_next(
    session: Session,
    *,
    queue: str,
    worker_id: str,
    lease_s: float,
    max_attempts: int = DEFAULT_MAX_ATTEMPTS,
) -> Job | None:
    """Claim the fairest claimable job of ``queue`` (``fairest_job``; ``claim_job`` does the
    claiming). A candidate another worker took meanwhile, or one out of attempts (failed here as
    ``claim_job`` fails it), is passed over for the next. None: no job of ``queue`` waits.
    Commit right after claiming."""
    passed: list[str] = []
    for _ in range(MAX_CLAIM_RACES):
        job_id = fairest_job(session, queue=queue, skip=passed)
        if job_id is None:
            return None
        job = claim_job(
            session, job_id=job_id, worker_id=worker_id, lease_s=lease_s, max_attempts=max_attempts
        )
        if job is not None:
            return job
        passed.append(job_id)
    return None


def heartbeat(
    session: Session,
    *,
    job_id: str,
    worker_id: str,
    lease_s: float,
    step: int | None = None,
    images_per_s: float | None = None,
    phase: str | None = None,
    eta_s: float | None = None,
    progress_interval_s: float = 30.0,
) -> Heartbeat:
    """Renew the lease of a job we run and record its progress (what is given: the step, speed,
    phase and the seconds expected left), telling its webhook at most every
    ``progress_interval_s``. See ``Heartbeat`` for the answer."""
    now = utcnow()
    values: dict[str, Any] = {
        "lease_expires_at": now + timedelta(seconds=lease_s),
        "updated_at": now,
    }
    if step is not None:
        values["step"] = step
    if images_per_s is not None:
        values["images_per_s"] = finite_or_none(images_per_s)
    if phase is not None:
        values["phase"] = phase
    if eta_s is not None:
        values["eta_s"] = finite_or_none(eta_s)
    flags = session.execute(
        update(Job)
        .where(Job.id == job_id, Job.worker_id == worker_id, Job.status == JobStatus.RUNNING)
        .values(**values)
        .returning(Job.cancel_requested, Job.pause_requested, Job.webhook)
        .execution_options(**NO_SYNC)
    ).one_or_none()
    if flags is None:
        cancel = session.scalar(select(Job.cancel_requested).where(Job.id == job_id))
        return Heartbeat(owned=False, cancel_requested=bool(cancel))
    config = flags[2]
    if webhooks.progress_due(session, job_id=job_id, config=config, interval_s=progress_interval_s):
        webhooks.notify(session, job_id=job_id, event=WebhookEvent.PROGRESS, config=config)
    return Heartbeat(owned=True, cancel_requested=bool(flags[0]), pause_requested=bool(flags[1]))


def finish_job(
    session: Session,
    *,
    job_id: str,
    worker_id: str,
    status: str,
    error_code: str | None = None,
    error_message: str | None = None,
    note: str | None = None,
    model_id: str | None = None,
    summary: dict[str, Any] | None = None,
    step: int | None = None,
) -> bool:
    """End our running job as succeeded, failed or cancelled, or hand it back as interrupted (a
    graceful worker shutdown; re-enqueue it then). Only a failed job carries an error
    (``error_code``, ``error_message``); ``note`` is said in the status event of the others
    ("worker shut down at step 40"). False, and nothing written, if the job is no longer ours."""
    move = _FINISH.get(status)  # type: ignore[call-overload]  # a str finds its JobStatus key
    if move is None:
        raise ValueError(f"finish_job cannot set status {status!r}")
    failed = move.target == JobStatus.FAILED
    if (error_code or error_message) and not failed:
        raise ValueError(f"a {status} job has no error; say why in its note")
    values: dict[str, Any] = {
        "error_code": error_code,
        "error_message": error_message[:MAX_MESSAGE_CHARS] if error_message else None,
        "phase": None,
        "eta_s": None,
    }
    if model_id is not None:
        values["model_id"] = model_id
    if summary is not None:
        values["summary_metrics"] = summary
    if step is not None:
        values["step"] = step
    if failed:
        detail = f": {error_code or 'error'}" + (f": {error_message}" if error_message else "")
    else:
        detail = f": {note}" if note else ""
    return _transition(
        session,
        move,
        job_id=job_id,
        current=JobStatus.RUNNING,
        where=(Job.worker_id == worker_id,),
        values=values,
        detail=detail,
        step=step,
    )


def succeed_job(
    session: Session,
    *,
    job_id: str,
    worker_id: str,
    model_id: str,
    class_names: list[str] | None,
    image_shape: list[int],
    summary: dict[str, Any] | None = None,
    step: int | None = None,
    size_bytes: int | None = None,
) -> TrainedModel | None:
    """``finish_job(succeeded)`` and ``register_model`` together, only if the job is still ours.
    Upload the artifacts under ``model_prefix(model_id)`` first (``model_id = new_id("mdl")``)."""
    if not finish_job(
        session,
        job_id=job_id,
        worker_id=worker_id,
        status=JobStatus.SUCCEEDED,
        model_id=model_id,
        summary=summary,
        step=step,
    ):
        return None
    return register_model(
        session,
        job_id=job_id,
        model_id=model_id,
        class_names=class_names,
        image_shape=image_shape,
        summary=summary,
        size_bytes=size_bytes,
    )


def register_model(
    session: Session,
    *,
    job_id: str,
    model_id: str | None = None,
    class_names: list[str] | None,
    image_shape: list[int],
    summary: dict[str, Any] | None = None,
    size_bytes: int | None = None,
) -> TrainedModel:
    """The model row of a job's generator (idempotent: one model per job)."""
    existing = session.scalar(select(TrainedModel).where(TrainedModel.job_id == job_id))
    if existing is not None:
        return existing
    job = get_job(session, job_id=job_id)
    model_id = model_id or new_id("mdl")
    model = TrainedModel(
        id=model_id,
        tenant_id=job.tenant_id,
        job_id=job_id,
        spec=job.spec,
        name=job.name,
        tags=list(job.tags),
        metadata_=dict(job.metadata_),
        class_names=class_names,
        image_shape=list(image_shape),
        summary_metrics=summary,
        storage_prefix=model_prefix(model_id),
        size_bytes=size_bytes,
        created_at=utcnow(),
    )
    session.add(model)
    session.flush()
    return model


# --- what a run reports ------------------------------------------------------------------------


def record_event(
    session: Session,
    *,
    job_id: str,
    code: str,
    message: str,
    level: str = "info",
    step: int | None = None,
) -> JobEvent:
    """Append to the job's ordered log; ``seq`` is 1, 2, 3... per job (a counter on the job row)."""
    if level not in EVENT_LEVELS:
        raise ValueError(f"event level must be one of {EVENT_LEVELS}, not {level!r}")
    counted = session.execute(
        update(Job)
        .where(Job.id == job_id)
        .values(event_seq=Job.event_seq + 1)
        .returning(Job.event_seq, Job.webhook)
        .execution_options(**NO_SYNC)
    ).one_or_none()
    if counted is None:
        raise NotFound(f"job {job_id} not found")
    seq, webhook = counted
    event = JobEvent(
        job_id=job_id,
        seq=seq,
        step=step,
        level=level,
        code=code,
        message=message[:MAX_MESSAGE_CHARS],
        created_at=utcnow(),
    )
    session.add(event)
    session.flush()
    if level != EventLevel.INFO and code != STATUS:
        webhooks.notify(
            session, job_id=job_id, event=WebhookEvent.WARNING, config=webhook, job_event=event
        )
    return event


def record_metrics(
    session: Session, *, job_id: str, step: int, metrics: Mapping[str, float]
) -> None:
    """Store metric points, idempotent on (job, name, step): a replayed step (after a resume)
    overwrites its point instead of adding one. Non-finite values are stored as NULL. Also updates
    the job's ``latest_metrics`` (per name, the value at its newest step)."""
    if not metrics:
        return
    values = {name: finite_or_none(value) for name, value in metrics.items()}
    insert = _insert(session)
    statement = insert(Metric).values(
        [{"job_id": job_id, "name": n, "step": step, "value": v} for n, v in values.items()]
    )
    statement = statement.on_conflict_do_update(
        index_elements=["job_id", "name", "step"], set_={"value": statement.excluded.value}
    )
    session.execute(statement)
    latest = dict(session.scalar(select(Job.latest_metrics).where(Job.id == job_id)) or {})
    for name, value in values.items():
        if name not in latest or step >= int(latest[name].get("step", -1)):
            latest[name] = {"step": step, "value": value}
    _set(session, Job.id == job_id, latest_metrics=latest)


def record_sample(
    session: Session, *, job_id: str, step: int, storage_key: str, size_bytes: int | None = None
) -> None:
    """A sample grid stored at ``storage_key`` (idempotent per step)."""
    insert = _insert(session)
    statement = insert(Sample).values(
        job_id=job_id, step=step, storage_key=storage_key, size_bytes=size_bytes,
        created_at=utcnow(),
    )  # fmt: skip
    statement = statement.on_conflict_do_update(
        index_elements=["job_id", "step"],
        set_={"storage_key": statement.excluded.storage_key,
              "size_bytes": statement.excluded.size_bytes},
    )  # fmt: skip
    session.execute(statement)


def record_checkpoint(
    session: Session,
    *,
    job_id: str,
    step: int,
    storage_key: str,
    metrics: Mapping[str, float] | None = None,
    size_bytes: int | None = None,
) -> None:
    """A checkpoint stored at ``storage_key`` (idempotent per step)."""
    clean = {k: finite_or_none(v) for k, v in (metrics or {}).items()} if metrics else None
    insert = _insert(session)
    statement = insert(Checkpoint).values(
        job_id=job_id, step=step, storage_key=storage_key, metrics=clean, size_bytes=size_bytes,
        created_at=utcnow(),
    )  # fmt: skip
    statement = statement.on_conflict_do_update(
        index_elements=["job_id", "step"],
        set_={"storage_key": statement.excluded.storage_key, "metrics": statement.excluded.metrics,
              "size_bytes": statement.excluded.size_bytes},
    )  # fmt: skip
    session.execute(statement)


def best_checkpoint_step(session: Session, *, job_id: str, best_by: Sequence[str]) -> int | None:
    """The step of the checkpoint whose own evaluation scored lowest on the first metric of
    ``best_by`` the job evaluated at a checkpoint's step (the newest of equals); None if none."""
    at_a_checkpoint = (Checkpoint.job_id == Metric.job_id) & (Checkpoint.step == Metric.step)
    for name in best_by:
        step = session.scalar(
            select(Metric.step)
            .join(Checkpoint, at_a_checkpoint)
            .where(Metric.job_id == job_id, Metric.name == name, Metric.value.is_not(None))
            .order_by(Metric.value, Metric.step.desc())
            .limit(1)
        )  # fmt: skip
        if step is not None:
            return int(step)
    return None


def prune_checkpoints(
    session: Session, *, job_id: str, keep_newest: int, best_by: Sequence[str]
) -> list[str]:
    """Delete the rows of the job's checkpoints that are neither among the ``keep_newest`` newest
    nor the best (``best_checkpoint_step``); returns their storage keys, whose objects the caller
    deletes once this commits."""
    if keep_newest < 1:
        raise ValueError("keep_newest must be at least 1: a job resumes from its newest")
    rows = session.execute(
        select(Checkpoint.step, Checkpoint.storage_key)
        .where(Checkpoint.job_id == job_id).order_by(Checkpoint.step.desc())
    ).all()  # fmt: skip
    kept = {step for step, _ in rows[:keep_newest]}
    best = best_checkpoint_step(session, job_id=job_id, best_by=best_by)
    if best is not None:
        kept.add(best)
    doomed = [(step, key) for step, key in rows if step not in kept]
    if doomed:
        session.execute(
            delete(Checkpoint).where(
                Checkpoint.job_id == job_id, Checkpoint.step.in_([step for step, _ in doomed])
            )
        )
    return [key for _, key in doomed]


# --- the reaper --------------------------------------------------------------------------------


def reap(
    session: Session,
    *,
    now: datetime | None = None,
    requeue_queued_older_than_s: float = 600.0,
    max_attempts: int = DEFAULT_MAX_ATTEMPTS,
    limit: int = 500,
) -> list[str]:
    """Mark running jobs whose lease expired ``interrupted`` (``cancelled`` if a cancel was
    requested; ``failed`` with ``worker_lost`` once ``max_attempts`` attempts lost their worker),
    and return the ids to (re-)enqueue: the interrupted ones, plus queued or interrupted jobs not
    enqueued for ``requeue_queued_older_than_s`` (their broker message may be lost; duplicates
    are harmless thanks to ``claim_job``). Safe to run from several processes at once."""
    now = now or utcnow()
    to_enqueue: list[str] = []

    expired = session.execute(
        _LEASE_COLUMNS.where(Job.status == JobStatus.RUNNING, Job.lease_expires_at < _at(now))
        .order_by(Job.lease_expires_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    ).all()
    for job in expired:
        if _lose_worker(session, job, now=now, max_attempts=max_attempts) in CLAIMABLE_STATUSES:
            to_enqueue.append(job.id)

    stale_before = now - timedelta(seconds=requeue_queued_older_than_s)
    stale = session.scalars(
        select(Job.id)
        .where(Job.status.in_(CLAIMABLE_STATUSES), Job.enqueued_at < _at(stale_before))
        .order_by(Job.enqueued_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    ).all()
    still_stale = (Job.status.in_(CLAIMABLE_STATUSES), Job.enqueued_at < _at(stale_before))
    for job_id in stale:
        if _set(session, Job.id == job_id, *still_stale, enqueued_at=now):
            to_enqueue.append(job_id)
    return to_enqueue
