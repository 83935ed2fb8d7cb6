"""``GET /v1/jobs/{id}/stream``: Server-Sent Events from polling the database.

Each poll opens its own short session (no connection is held between polls), reads the job row
first and then its new events, so once the job is seen finished every event it wrote is seen too.
Messages: ``event`` (one per log row, ``id:`` = its seq, so ``Last-Event-ID`` resumes), ``progress``
and ``metrics`` when they change, ``status`` (with the job's ``phase``: training, evaluating...)
when it changes; the stream ends after the final ``status``. A comment line keeps idle
connections alive.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import anyio
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from api.schemas import EventOut, JobOut
from store.models import FINISHED_STATUSES, Job, JobEvent

EVENTS_PER_POLL = 500
RETRY_MS = 2000


@dataclass(frozen=True)
class Snapshot:
    status: dict[str, Any]
    progress: dict[str, Any]
    metrics: dict[str, Any]
    events: list[tuple[int, str]]  # (seq, JSON)
    finished: bool


def sse(event: str, data: str, *, id: str | None = None) -> str:
    lines = [f"event: {event}"]
    if id is not None:
        lines.append(f"id: {id}")
    lines.extend(f"data: {line}" for line in data.splitlines() or [""])
    return "\n".join(lines) + "\n\n"


def poll(sessions: sessionmaker[Session], job_id: str, after_seq: int) -> Snapshot | None:
    with sessions() as session:
        job = session.scalar(select(Job).where(Job.id == job_id))
        if job is None:
            return None
        events = session.scalars(
            select(JobEvent)
            .where(JobEvent.job_id == job_id, JobEvent.seq > after_seq)
            .order_by(JobEvent.seq)
            .limit(EVENTS_PER_POLL)
        ).all()
        out = JobOut.model_validate(job)
        return Snapshot(
            status={
                "id": job.id,
                "status": job.status,
                "phase": out.phase,
                "error": None if out.error is None else out.error.model_dump(),
                "model_id": job.model_id,
                "attempt": job.attempt,
                "cancel_requested": job.cancel_requested,
            },
            progress=out.progress.model_dump(),
            metrics=dict(job.latest_metrics),
            events=[(e.seq, EventOut.model_validate(e).model_dump_json()) for e in events],
            finished=job.status in FINISHED_STATUSES and len(events) < EVENTS_PER_POLL,
        )


async def job_stream(
    *,
    sessions: sessionmaker[Session],
    job_id: str,
    after_seq: int,
    poll_s: float,
    keepalive_s: float,
    disconnected: Callable[[], Awaitable[bool]],
) -> AsyncIterator[str]:
    yield f"retry: {RETRY_MS}\n\n"
    sent: dict[str, str] = {}
    last_write = time.monotonic()
    while True:
        snapshot = await anyio.to_thread.run_sync(poll, sessions, job_id, after_seq)
        if snapshot is None:  # deleted with its tenant
            yield sse("status", json.dumps({"id": job_id, "status": "deleted"}))
            return
        messages = []
        for seq, data in snapshot.events:
            messages.append(sse("event", data, id=str(seq)))
            after_seq = seq
        for name, value in (
            ("progress", snapshot.progress),
            ("metrics", snapshot.metrics),
            ("status", snapshot.status),
        ):
            data = json.dumps(value, separators=(",", ":"), default=str)
            if sent.get(name) != data:
                messages.append(sse(name, data))
                sent[name] = data
        if messages:
            yield "".join(messages)
            last_write = time.monotonic()
        elif time.monotonic() - last_write >= keepalive_s:
            yield ": keep-alive\n\n"
            last_write = time.monotonic()
        if snapshot.finished or await disconnected():
            return
        if len(snapshot.events) < EVENTS_PER_POLL:
            await anyio.sleep(poll_s)
