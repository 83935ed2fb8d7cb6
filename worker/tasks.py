"""The Celery task body: a thin shell around ``worker.runner.run_job``."""

from __future__ import annotations

import threading

from celery.exceptions import Reject

from store.queue import TRAIN_QUEUE
from store.settings import get_settings
from worker import webhooks
from worker.runner import SHUTTING_DOWN, new_worker_id, run_job

# Set by the worker's SIGTERM/SIGINT handler (see worker.app): the running job stops after its
# current step, saves a checkpoint there, and is handed back to the queue. From then on this
# worker claims nothing: a message it still receives (the job it just handed back, say) is
# rejected back to the queue for the next worker.
SHUTDOWN = threading.Event()


def train(job_id: str, queue: str = TRAIN_QUEUE) -> str:
    """One claim on ``queue``, triggered by the message of ``job_id``: trains the fairest job
    waiting there (see ``run_job``) and returns the status it was left in. A message without a
    queue was sent before queues were per job kind (0009): to ``train``, where its job still is."""
    outcome = run_job(
        job_id, settings=get_settings(), worker_id=new_worker_id(), shutdown=SHUTDOWN, queue=queue
    )
    if outcome.status == SHUTTING_DOWN:
        message = f"worker shutting down; job {job_id} is left for the next worker"
        # from None: raised while Celery handles its own shutdown, which is not this story
        raise Reject(message, requeue=True) from None
    return outcome.status


def deliver_webhook(delivery_id: str) -> str:
    """One try of a webhook delivery (``worker.webhooks.deliver``)."""
    return webhooks.deliver(delivery_id, settings=get_settings())
