"""The Celery task body: a thin shell around ``worker.runner.run_job``."""

from __future__ import annotations

import threading

from store.settings import get_settings
from worker.runner import new_worker_id, run_job

# Set by the worker's SIGTERM/SIGINT handler (see worker.app): the running job stops after its
# current step, saves a checkpoint there, and is handed back to the queue.
SHUTDOWN = threading.Event()


def train(job_id: str) -> str:
    """Train one job; returns the status it was left in (see ``run_job``)."""
    return run_job(job_id, settings=get_settings(), worker_id=new_worker_id(), shutdown=SHUTDOWN)
