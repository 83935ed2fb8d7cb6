"""The worker's side of gan_engine's callbacks: a run reported into the database and storage.

Every write uses its own short session (a commit per callback), so the API sees progress as it
happens and no transaction stays open while the GPU works. A background thread renews the job's
lease every ``HEARTBEAT_S`` and reads the cancel flag; ``on_step`` also beats (at most once every
``PROGRESS_S``), so progress and cancels show within about a second while steps are flowing.

Once the lease is lost (the reaper gave the job away, or it finished elsewhere) the reporter writes
nothing more and asks the trainer to stop.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from gan_engine.callbacks import Callback
from gan_engine.checkpoint import checkpoint_bytes
from gan_engine.events import Event
from store.db import session_scope
from store.jobs import heartbeat, record_checkpoint, record_event, record_metrics, record_sample
from store.storage import ObjectStorage, checkpoint_key, sample_key

log = logging.getLogger("ganforge.worker")

PROGRESS_S = 1.0  # the least time between two heartbeats sent from on_step


class StopReason:
    """Why the reporter asked the trainer to stop (None: it did not)."""

    CANCELLED = "cancelled"
    LEASE_LOST = "lease_lost"
    SHUTDOWN = "shutdown"


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
    def __init__(
        self,
        *,
        job_id: str,
        worker_id: str,
        sessions: sessionmaker[Session],
        storage: ObjectStorage,
        lease_s: float,
        heartbeat_s: float,
        shutdown: threading.Event | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.job_id, self.worker_id = job_id, worker_id
        self.sessions, self.storage = sessions, storage
        self.lease_s, self.heartbeat_s = lease_s, heartbeat_s
        self.shutdown = shutdown or threading.Event()
        self.clock = clock
        self.step = 0
        self.images_per_s: float | None = None
        self.latest_metrics: dict[str, float] = {}
        self.cancel_requested = False
        self.lease_lost = False
        self.event_codes: set[str] = set()
        self._last_beat = -math.inf
        self._beat_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # --- heartbeats --------------------------------------------------------------------------

    def start(self) -> None:
        """Start the heartbeat thread (a first beat is sent at once)."""
        self._thread = threading.Thread(
            target=self._beat_forever, name=f"heartbeat-{self.job_id}", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop the heartbeat thread; the lease then runs out unless the job is finished."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=max(5.0, self.heartbeat_s))
            self._thread = None

    def _beat_forever(self) -> None:
        while not self._stop.is_set():
            try:
                self.beat()
            except Exception:  # the database may blink; the lease outlives a few missed beats
                log.warning("heartbeat of job %s failed", self.job_id, exc_info=True)
            if self._stop.wait(self.heartbeat_s):
                return

    def beat(self) -> bool:
        """Renew the lease, report progress, read the cancel flag. True: keep training."""
        with self._beat_lock:
            if self.lease_lost:
                return False
            with session_scope(self.sessions) as session:
                answer = heartbeat(
                    session,
                    job_id=self.job_id,
                    worker_id=self.worker_id,
                    lease_s=self.lease_s,
                    step=self.step,
                    images_per_s=self.images_per_s,
                )
            self._last_beat = self.clock()
            if not answer.owned:
                if not self.lease_lost:
                    log.warning("job %s: lease lost; stopping without writing", self.job_id)
                self.lease_lost = True
            elif answer.cancel_requested:
                self.cancel_requested = True
            return bool(answer)

    @property
    def stop_reason(self) -> str | None:
        if self.lease_lost:
            return StopReason.LEASE_LOST
        if self.cancel_requested:
            return StopReason.CANCELLED
        if self.shutdown.is_set():
            return StopReason.SHUTDOWN
        return None

    def should_stop(self, step: int) -> bool:
        return self.stop_reason is not None

    # --- what the run reports ----------------------------------------------------------------

    def on_step(self, step: int, metrics: dict[str, float]) -> None:
        self.step = step
        clean = _clean(metrics)
        if "images_per_s" in clean and math.isfinite(clean["images_per_s"]):
            self.images_per_s = clean["images_per_s"]
        if self.clock() - self._last_beat >= PROGRESS_S:
            self.beat()
        self._record_metrics(step, clean)

    def on_eval(self, step: int, metrics: dict[str, float]) -> None:
        self._record_metrics(step, _clean(metrics))

    def _record_metrics(self, step: int, metrics: dict[str, float]) -> None:
        self.latest_metrics.update(metrics)
        if self.lease_lost or not metrics:
            return
        with session_scope(self.sessions) as session:
            record_metrics(session, job_id=self.job_id, step=step, metrics=metrics)

    def on_event(self, event: Event) -> None:
        self.event_codes.add(event.code)
        self.event(event.code, event.message, level=event.level, step=event.step)

    def event(self, code: str, message: str, *, level: str = "info", step: int | None) -> None:
        if self.lease_lost:
            return
        with session_scope(self.sessions) as session:
            record_event(
                session, job_id=self.job_id, code=code, message=message, level=level, step=step
            )

    def on_sample(self, step: int, png: bytes) -> None:
        if self.lease_lost:
            return
        key = sample_key(self.job_id, step)
        self.storage.put_bytes(key, png, "image/png")
        with session_scope(self.sessions) as session:
            record_sample(session, job_id=self.job_id, step=step, storage_key=key)

    def on_checkpoint(self, step: int, state: dict[str, Any]) -> None:
        """Blob first, then the row: a checkpoint row always points at a complete object."""
        if self.lease_lost:
            return
        key = checkpoint_key(self.job_id, step)
        self.storage.put_bytes(key, checkpoint_bytes(state))
        with session_scope(self.sessions) as session:
            record_checkpoint(
                session,
                job_id=self.job_id,
                step=step,
                storage_key=key,
                metrics=dict(self.latest_metrics),
            )
            record_event(
                session,
                job_id=self.job_id,
                step=step,
                code="checkpoint",
                message=f"checkpoint saved at step {step}",
            )
