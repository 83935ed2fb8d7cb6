"""The Celery side both the API (enqueue) and the worker (consume) share.

The broker is only a trigger: the job row in the database is the truth, and a message delivered
twice trains once because the worker claims the row with a conditional UPDATE.
"""

from __future__ import annotations

from functools import cache

from celery import Celery

from store.settings import Settings, get_settings

TRAIN_TASK = "ganforge.train"
TRAIN_QUEUE = "train"
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


@cache
def _client() -> Celery:
    return make_celery()


def enqueue_train(job_id: str, *, app: Celery | None = None) -> None:
    """Ask a worker to train ``job_id`` (idempotent: the worker's claim decides)."""
    (app or _client()).send_task(TRAIN_TASK, args=[job_id], queue=TRAIN_QUEUE)


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
