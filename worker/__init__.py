"""The Celery worker: claims a job row, trains it with gan_engine, reports into the store.

``worker.runner.run_job`` is the whole job and needs no Celery; ``worker.app`` wires it to the
``train`` queue.
"""

# ``celery -A worker.app <these>``: the train queue, one task at a time in the worker's own process
# (so SIGTERM reaches the training loop), no mingle/gossip chatter between workers.
CELERY_WORKER_ARGS: list[str] = [
    "worker",
    "--queues", "train",
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
