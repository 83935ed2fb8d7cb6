"""The worker's side of gan_engine's callbacks: a run recorded into the database and storage.

``Reporter`` only records (metrics, events, samples, checkpoints); the lease, progress and the
reasons to stop belong to ``worker.lease`` and ``worker.runner``.

Database writes go through ``PendingWrites``: each in its own short transaction (a commit per
callback, so the API sees progress as it happens and no transaction stays open while the GPU
works), in order. When the database cannot be reached (a restart, a failover) the write stays
queued, with everything after it, and training goes on; the queue is tried again at the next write
after a backoff, and ``flush`` waits for it, for a bounded time, before the job is finished. Every
write is idempotent (metric rows are keyed by (job, name, step), samples and checkpoints by
(job, step)), so a write retried after an unclear commit cannot duplicate a point; an event retried
that way could appear twice.

Object storage writes (sample PNGs, checkpoints) are bounded by the storage client's own timeouts
and tries (``STORAGE_TIMEOUT_S``, ``STORAGE_MAX_ATTEMPTS``); one that still fails ends the job as
``storage_unavailable``. Blob first, then its row: a row always points at a complete object.
"""

from __future__ import annotations

import logging
import math
import time
from collections import deque
from collections.abc import Callable
from typing import Any, TypeVar

from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from gan_engine.callbacks import Callback
from gan_engine.checkpoint import checkpoint_bytes
from gan_engine.evaluation import BEST_CHECKPOINT_METRICS
from gan_engine.events import Event
from store.db import session_scope
from store.jobs import (
    prune_checkpoints,
    record_checkpoint,
    record_event,
    record_metrics,
    record_sample,
)
from store.storage import ObjectStorage, checkpoint_key, sample_key
from worker.outcome import STORAGE_UNAVAILABLE, JobFailed

log = logging.getLogger("ganforge.worker")

# a write may return what to do once it has committed (delete objects its rows no longer name)
Write = Callable[[Session], Callable[[], None] | None]
T = TypeVar("T")

FIRST_BACKOFF_S = 0.1
MAX_BACKOFF_S = 5.0
MAX_PENDING = 10_000  # writes held while the database is away; past this, training waits


class DatabaseUnavailable(Exception):
    """The database could not be reached for longer than the writes may wait."""


def is_unreachable(error: BaseException) -> bool:
    """A database error that a retry may cure: the server is down, restarting or busy."""
    if isinstance(error, OperationalError | InterfaceError):
        return True
    return isinstance(error, DBAPIError) and bool(error.connection_invalidated)


class PendingWrites:
    """Database writes applied in order, each in its own transaction, held and retried (with a
    backoff from ``FIRST_BACKOFF_S`` doubling to ``MAX_BACKOFF_S``) while the database is
    unreachable. ``writable()`` False drops them: the job is no longer ours."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        *,
        writable: Callable[[], bool] = lambda: True,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.sessions, self.writable = sessions, writable
        self.clock, self.sleep = clock, sleep
        self._queue: deque[Write] = deque()
        self._backoff = 0.0
        self._next_try = -math.inf

    def __len__(self) -> int:
        return len(self._queue)

    def submit(self, write: Write, *, wait_s: float) -> None:
        """Queue ``write`` and try what is queued (now, unless backing off). With ``MAX_PENDING``
        writes already held, wait up to ``wait_s`` for the database first."""
        if not self.writable():
            self._queue.clear()
            return
        self._queue.append(write)
        if len(self._queue) > MAX_PENDING:
            self.flush(wait_s)
        else:
            self.drain()

    def drain(self) -> bool:
        """Try the queued writes in order, unless backing off. True: none is left."""
        if not self.writable():
            self._queue.clear()
            return True
        if self.clock() < self._next_try:
            return not self._queue
        while self._queue:
            try:
                with session_scope(self.sessions) as session:
                    after_commit = self._queue[0](session)
            except Exception as error:
                if not is_unreachable(error):
                    self._queue.popleft()  # a bug, not an outage: retrying would repeat it
                    raise
                self._backoff = min(MAX_BACKOFF_S, max(FIRST_BACKOFF_S, 2 * self._backoff))
                self._next_try = self.clock() + self._backoff
                if self._backoff == FIRST_BACKOFF_S:
                    log.warning("database unreachable; holding %d write(s)", len(self._queue))
                return False
            self._queue.popleft()
            if self._backoff:
                log.info("database reachable again; writing what was held")
                self._backoff = 0.0
            if after_commit is not None:
                after_commit()
        return True

    def call(self, write: Callable[[Session], T], *, timeout_s: float) -> T | None:
        """Run ``write`` after everything queued, retried like the others, and return what its
        committed try returned; None if the writes were dropped (the job is no longer ours)."""
        results: list[T] = []

        def keep_result(session: Session) -> None:
            results.append(write(session))

        self.submit(keep_result, wait_s=timeout_s)
        self.flush(timeout_s)
        return results[-1] if results else None  # the last try is the one that committed

    def flush(self, timeout_s: float) -> None:
        """Write everything queued, waiting out the backoff; ``DatabaseUnavailable`` if some is
        still held after ``timeout_s``."""
        deadline = self.clock() + timeout_s
        while not self.drain():
            now = self.clock()
            if now >= deadline:
                raise DatabaseUnavailable(
                    f"the database was unreachable for {timeout_s:g} s; "
                    f"{len(self._queue)} write(s) not made"
                )
            self.sleep(max(0.0, min(self._next_try, deadline) - now))


def _clean(metrics: dict[str, Any]) -> dict[str, float]:
    """Float values; NaN and inf are kept as NaN (the store writes them as NULL)."""
    out: dict[str, float] = {}
    for name, value in metrics.items():
        try:
            number = float(value)
        except (TypeError, ValueError):
            continue
        out[name] = number if math.isfinite(number) else math.nan
    return out


class Reporter(Callback):
    """Records a run: metric points, events, sample grids and checkpoints.

    ``writable``: False once the job is no longer ours (its lease was lost); nothing more is
    written then. ``wait_s``: how long a write may wait for an unreachable database when the
    queue is full, and how long ``flush`` waits by default. ``keep_checkpoints``: the newest
    checkpoints kept as training goes, besides the best evaluated one."""

    def __init__(
        self,
        *,
        job_id: str,
        sessions: sessionmaker[Session],
        storage: ObjectStorage,
        writable: Callable[[], bool] = lambda: True,
        wait_s: float = 60.0,
        keep_checkpoints: int = 3,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.job_id, self.storage, self.writable, self.wait_s = job_id, storage, writable, wait_s
        self.keep_checkpoints = keep_checkpoints
        self.writes = PendingWrites(sessions, writable=writable, clock=clock, sleep=sleep)
        self.latest_metrics: dict[str, float] = {}
        self.event_codes: set[str] = set()
        self.checkpoint_steps: list[int] = []

    def flush(self, timeout_s: float | None = None) -> None:
        """Wait until every held write is made (``DatabaseUnavailable`` after the timeout)."""
        self.writes.flush(self.wait_s if timeout_s is None else timeout_s)

    def _write(self, write: Write) -> None:
        self.writes.submit(write, wait_s=self.wait_s)

    # --- the callbacks -----------------------------------------------------------------------

    def on_step(self, step: int, metrics: dict[str, float]) -> None:
        self._record_metrics(step, _clean(metrics))

    def on_eval(self, step: int, metrics: dict[str, float]) -> None:
        self._record_metrics(step, _clean(metrics))

    def _record_metrics(self, step: int, metrics: dict[str, float]) -> None:
        self.latest_metrics.update(metrics)
        if metrics:
            job_id = self.job_id
            self._write(
                lambda session: record_metrics(session, job_id=job_id, step=step, metrics=metrics)
            )

    def on_event(self, event: Event) -> None:
        self.event_codes.add(event.code)
        self.event(event.code, event.message, level=event.level, step=event.step)

    def event(self, code: str, message: str, *, level: str = "info", step: int | None) -> None:
        job_id = self.job_id

        def write(session: Session) -> None:
            record_event(session, job_id=job_id, code=code, message=message, level=level, step=step)

        self._write(write)

    def on_sample(self, step: int, png: bytes) -> None:
        if not self.writable():
            return
        key = sample_key(self.job_id, step)
        self._put(key, png, "image/png", what=f"the sample grid of step {step}")
        job_id = self.job_id
        self._write(
            lambda session: record_sample(
                session, job_id=job_id, step=step, storage_key=key, size_bytes=len(png)
            )
        )

    def on_checkpoint(self, step: int, state: dict[str, Any]) -> None:
        if not self.writable():
            return
        key = checkpoint_key(self.job_id, step)
        data = checkpoint_bytes(state)
        self._put(key, data, what=f"the checkpoint of step {step}")
        self.checkpoint_steps.append(step)
        job_id, metrics, size = self.job_id, dict(self.latest_metrics), len(data)

        def write(session: Session) -> Callable[[], None]:
            record_checkpoint(
                session, job_id=job_id, step=step, storage_key=key, metrics=metrics,
                size_bytes=size,
            )  # fmt: skip
            record_event(
                session,
                job_id=job_id,
                step=step,
                code="checkpoint",
                message=f"checkpoint saved at step {step}",
            )
            pruned = prune_checkpoints(
                session,
                job_id=job_id,
                keep_newest=self.keep_checkpoints,
                best_by=BEST_CHECKPOINT_METRICS,
            )
            return lambda: self._delete_objects(pruned)

        self._write(write)

    def _delete_objects(self, keys: list[str]) -> None:
        """Objects of rows already deleted; one storage refuses stays behind (logged), as an
        orphan no row names."""
        for key in keys:
            try:
                self.storage.delete(key)
            except Exception:
                log.warning("job %s: could not delete %s", self.job_id, key, exc_info=True)

    def _put(
        self, key: str, data: bytes, content_type: str = "application/octet-stream", *, what: str
    ) -> None:
        """Store a blob; a failure (after the storage client's own bounded tries) fails the job."""
        try:
            self.storage.put_bytes(key, data, content_type)
        except Exception as error:
            raise JobFailed(
                STORAGE_UNAVAILABLE,
                f"object storage did not take {what} ({key}): {type(error).__name__}: {error}. "
                "The job stopped; the checkpoints saved before are kept. Submit it again once "
                "storage is reachable",
            ) from error
