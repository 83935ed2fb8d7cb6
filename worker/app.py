"""The Celery application of the worker: ``celery -A worker.app worker -Q train,train.cpu
--concurrency 1`` for training (plus ``train.gpu.N`` on a worker that sees N GPUs:
``worker.training_worker_args``), ``-Q webhooks`` (threads) for webhook deliveries.

One training task per process (``--concurrency 1``, prefetch 1, acks late); run one worker per
GPU, or one per node for a pool of N-GPU jobs. ``ganforge worker`` starts it with the solo pool,
so the task runs in the process that receives SIGTERM: a ``docker stop`` or Ctrl-C stops the job
after its current step, saves a checkpoint, and hands the job back to the queue (status
``interrupted``) for the next worker to resume.
"""

from __future__ import annotations

from typing import Any

from celery import Celery
from celery.signals import worker_process_init, worker_shutting_down

from store.db import dispose_engines
from store.queue import TRAIN_QUEUE, TRAIN_TASK, WEBHOOK_QUEUE, WEBHOOK_TASK, make_celery
from worker import tasks

celery_app: Celery = make_celery()
app = celery_app  # the name `celery -A worker.app` looks for first

train = celery_app.task(
    name=TRAIN_TASK,
    acks_late=True,
    reject_on_worker_lost=True,
    queue=TRAIN_QUEUE,
    ignore_result=True,
)(tasks.train)

deliver_webhook = celery_app.task(
    name=WEBHOOK_TASK, acks_late=True, queue=WEBHOOK_QUEUE, ignore_result=True
)(tasks.deliver_webhook)


@worker_shutting_down.connect
def _stop_training(**_: Any) -> None:
    tasks.SHUTDOWN.set()


@worker_process_init.connect
def _fresh_connections(**_: Any) -> None:
    """A forked pool child must not reuse the parent's database connections."""
    dispose_engines()
