"""The Celery worker: claims a job row, trains it with gan_engine, reports into the store.

``worker.runner.run_job`` is the whole job and needs no Celery; ``worker.app`` wires it to the
training queues (``store.queue``).
"""

from __future__ import annotations

from collections.abc import Sequence

from store.queue import worker_queues
from store.settings import Settings, get_settings


def serving_queues(settings: Settings | None = None) -> list[str]:
    """The training queues this machine's worker consumes: from its GPU count (``WORKER_GPUS``,
    else ``torch.cuda.device_count()``) and ``WORKER_CPU_JOBS`` (``store.queue.worker_queues``)."""
    settings = settings or get_settings()
    gpus = settings.worker_gpus
    if gpus is None:
        import torch  # only here: the CLI imports this module and must start fast

        gpus = torch.cuda.device_count()
    return worker_queues(gpus, cpu_jobs=settings.worker_cpu_jobs)


def training_worker_args(queues: Sequence[str] | None = None) -> list[str]:
    """``celery -A worker.app <these>``: the training ``queues`` (default ``serving_queues()``),
    one task at a time in the worker's own process (so SIGTERM reaches the training loop), no
    mingle/gossip chatter between workers."""
    return [
        "worker",
        "--queues", ",".join(queues if queues is not None else serving_queues()),
        "--concurrency", "1",
        "--pool", "solo",
        "--without-mingle",
        "--without-gossip",
    ]  # fmt: skip


# Webhook deliveries: HTTP tries, so threads; a slow receiver holds one thread for its timeout.
WEBHOOK_WORKER_ARGS: list[str] = [
    "worker",
    "--queues", "webhooks",
    "--concurrency", "4",
    "--pool", "threads",
    "--without-mingle",
    "--without-gossip",
]  # fmt: skip
