"""A running job's lease, and its one owner: ``Lease``.

A background thread renews the lease every ``HEARTBEAT_S`` and reads the cancel flag; the run
reports its progress with ``progress`` after logged steps and at each new phase, which also
renews the lease (at most once every ``PROGRESS_S``, but at once for a phase), so progress and
cancels show within about a second while steps are flowing. Each renewal also writes the run's
phase and seconds left (``run_progress``), so the ETA counts down through a long evaluation.
A renewal that fails because the database blinked is logged and tried again at the next beat:
the lease outlives a few missed beats. Once the lease is lost (the reaper gave the job away, or
it finished elsewhere) it stays lost, and the run must stop and write nothing more.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable

from sqlalchemy.orm import Session, sessionmaker

from gan_engine.progress import RunProgress
from store.db import session_scope
from store.jobs import heartbeat
from worker.outcome import StopReason

log = logging.getLogger("ganforge.worker")

PROGRESS_S = 1.0  # the least time between two renewals sent from ``progress``


class Lease:
    def __init__(
        self,
        *,
        job_id: str,
        worker_id: str,
        sessions: sessionmaker[Session],
        lease_s: float,
        heartbeat_s: float,
        webhook_progress_interval_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.job_id, self.worker_id = job_id, worker_id
        self.webhook_progress_interval_s = webhook_progress_interval_s
        self.sessions = sessions
        self.lease_s, self.heartbeat_s = lease_s, heartbeat_s
        self.clock = clock
        self.step = 0
        self.images_per_s: float | None = None
        self.run_progress: RunProgress | None = None  # the phase and ETA each renewal reports
        self.lost = False
        self.cancel_requested = False
        self.pause_requested = False
        self._last_renewal = -math.inf
        self._failing = False  # the last renewal failed (logged once per outage)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def stop_reason(self) -> StopReason | None:
        """``LEASE_LOST``, ``CANCELLED``, or None while the run may go on."""
        if self.lost:
            return StopReason.LEASE_LOST
        if self.cancel_requested:
            return StopReason.CANCELLED
        if self.pause_requested:
            return StopReason.PAUSED
        return None

    def start(self) -> None:
        """Start the heartbeat thread (its first renewal is sent at once)."""
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

    def progress(
        self, step: int, images_per_s: float | None = None, *, at_once: bool = False
    ) -> None:
        """Record the run's progress; renew now if the last renewal is ``PROGRESS_S`` old, or
        ``at_once`` (a new phase)."""
        self.step = step
        if images_per_s is not None and math.isfinite(images_per_s):
            self.images_per_s = images_per_s
        if at_once or self.clock() - self._last_renewal >= PROGRESS_S:
            self._try_renew()

    def renew(self) -> bool:
        """Renew the lease, report progress, read the cancel flag. True: keep training. Raises
        what the database raises (the heartbeat thread logs it and tries again)."""
        with self._lock:
            if self.lost:
                return False
            run = self.run_progress
            with session_scope(self.sessions) as session:
                answer = heartbeat(
                    session,
                    job_id=self.job_id,
                    worker_id=self.worker_id,
                    lease_s=self.lease_s,
                    step=self.step,
                    images_per_s=self.images_per_s,
                    phase=None if run is None else run.phase,
                    eta_s=None if run is None else run.eta_s(),
                    progress_interval_s=self.webhook_progress_interval_s,
                )
            self._last_renewal = self.clock()
            if not answer.owned:
                log.warning("job %s: lease lost; stopping without writing", self.job_id)
                self.lost = True
            elif answer.cancel_requested:
                self.cancel_requested = True
            elif answer.pause_requested:
                self.pause_requested = True
            return bool(answer)

    def _try_renew(self) -> None:
        try:
            self.renew()
        except Exception:  # the database may blink; the lease outlives a few missed beats
            self._last_renewal = self.clock()  # not again before the next PROGRESS_S
            if not self._failing:
                log.warning("heartbeat of job %s failed; retrying", self.job_id, exc_info=True)
            self._failing = True
        else:
            if self._failing:
                log.info("heartbeat of job %s works again", self.job_id)
            self._failing = False

    def _beat_forever(self) -> None:
        while not self._stop.is_set():
            self._try_renew()
            if self._stop.wait(self.heartbeat_s):
                return
