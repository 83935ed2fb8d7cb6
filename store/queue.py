"""The Celery side both the API (enqueue) and the worker (consume) share.

The broker is only a trigger: the job row in the database is the truth, and a message delivered
twice trains once because the worker claims the row with a conditional UPDATE.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache
from typing import Any

from celery import Celery

from store.settings import Settings, get_settings

TRAIN_TASK = "ganforge.train"
# Training queues: one per kind of worker that can serve a job (docs/scaling.md, "Routing").
TRAIN_QUEUE = "train"  # device auto on one device: any worker (and every message sent before 0009)
CPU_QUEUE = "train.cpu"  # device cpu (N > 1 devices: N gloo ranks on one CPU worker)
GPU_QUEUE_PREFIX = "train.gpu."  # + N: workers that see exactly N GPUs (cuda, or auto on N > 1)
WEBHOOK_TASK = "ganforge.deliver_webhook"
WEBHOOK_QUEUE = "webhooks"  # its own workers: a slow receiver never holds a training worker


def make_celery(settings: Settings | None = None) -> Celery:
    settings = settings or get_settings()
    app = Celery("ganforge", broker=settings.broker_url, backend=None)
    app.conf.update(
        broker_transport_options=settings.broker_transport_options(),
        broker_connection_retry_on_startup=True,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_default_queue=TRAIN_QUEUE,
        task_routes={TRAIN_TASK: {"queue": TRAIN_QUEUE}, WEBHOOK_TASK: {"queue": WEBHOOK_QUEUE}},
        task_ignore_result=True,
        worker_hijack_root_logger=False,
    )
    return app


def train_queue(spec: Mapping[str, Any]) -> str:
    """The queue of a job: a pure function of its spec's ``training.device`` and
    ``training.devices`` (a resolved spec's dict; absent fields take the spec's defaults)."""
    training = spec.get("training") or {}
    device, devices = training.get("device", "auto"), int(training.get("devices", 1))
    if device == "cpu":
        return CPU_QUEUE
    if device == "cuda" or devices > 1:
        return gpu_queue(devices)
    return TRAIN_QUEUE


def gpu_queue(devices: int) -> str:
    return f"{GPU_QUEUE_PREFIX}{devices}"


def worker_queues(gpus: int, *, cpu_jobs: bool = True) -> list[str]:
    """The training queues a worker that sees ``gpus`` GPUs consumes: ``train`` always, its GPU
    pool's queue if it has GPUs, and ``train.cpu`` if it has none or ``cpu_jobs``."""
    queues = [TRAIN_QUEUE]
    if gpus > 0:
        queues.append(gpu_queue(gpus))
    if gpus == 0 or cpu_jobs:
        queues.append(CPU_QUEUE)
    return queues


@cache
def _client() -> Celery:
    return make_celery()


def enqueue_train(job_id: str, *, queue: str, app: Celery | None = None) -> None:
    """Ask a worker of ``queue`` (the job's, ``train_queue``) to train: the message is a trigger
    for one claim of the fairest queued job of that queue (``store.jobs.claim_next``), which may
    be ``job_id`` or another; a duplicate is harmless (the claim decides)."""
    (app or _client()).send_task(TRAIN_TASK, args=[job_id], kwargs={"queue": queue}, queue=queue)


def enqueue_webhook(
    delivery_id: str, *, countdown_s: float | None = None, app: Celery | None = None
) -> None:
    """Ask a webhook worker to try ``delivery_id`` (now, or in ``countdown_s``)."""
    (app or _client()).send_task(
        WEBHOOK_TASK, args=[delivery_id], queue=WEBHOOK_QUEUE, countdown=countdown_s
    )


def broker_ok(*, app: Celery | None = None, timeout_s: float = 2.0) -> bool:
    """Readiness: can we open a connection to the broker?"""
    try:
        with (app or _client()).connection_for_write() as connection:
            connection.ensure_connection(max_retries=1, timeout=timeout_s)
        return True
    except Exception:  # kombu raises transport-specific errors
        return False
