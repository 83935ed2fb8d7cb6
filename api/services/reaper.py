"""The reaper (DESIGN.md §4): jobs whose worker was lost go back to the queue (or fail with
``worker_lost`` once ``MAX_ATTEMPTS`` attempts lost theirs), and queued jobs whose broker message
was lost are enqueued again, as are webhook deliveries whose try is long overdue. Runs in the
API process as a background loop."""

from __future__ import annotations

import logging

import anyio
from celery import Celery
from sqlalchemy.orm import Session, sessionmaker

from store.db import session_scope
from store.jobs import queues_of, reap
from store.queue import enqueue_train, enqueue_webhook
from store.webhooks import stale_deliveries

log = logging.getLogger("api.reaper")


def reap_once(
    *,
    sessions: sessionmaker[Session],
    celery: Celery,
    requeue_queued_after_s: float,
    max_attempts: int,
) -> list[str]:
    """One pass: mark expired leases, then enqueue what needs it (after the commit). Returns the
    ids it enqueued."""
    with session_scope(sessions) as session:
        job_ids = reap(
            session,
            requeue_queued_older_than_s=requeue_queued_after_s,
            max_attempts=max_attempts,
        )
        queues = queues_of(session, job_ids=job_ids)
    enqueued = []
    for job_id in job_ids:
        try:
            enqueue_train(job_id, queue=queues[job_id], app=celery)
            enqueued.append(job_id)
        except Exception:  # the next pass picks it up again (enqueued_at was not moved back)
            log.warning("reaper: could not enqueue job %s", job_id, exc_info=True)
    if job_ids:
        log.info("reaper: re-enqueued %d job(s): %s", len(enqueued), ", ".join(enqueued))
    with session_scope(sessions) as session:
        lost_deliveries = stale_deliveries(session, older_than_s=requeue_queued_after_s)
    for delivery_id in lost_deliveries:
        try:
            enqueue_webhook(delivery_id, app=celery)
        except Exception:
            log.warning("reaper: could not enqueue webhook delivery %s", delivery_id, exc_info=True)
    return enqueued


async def reaper_loop(
    *,
    sessions: sessionmaker[Session],
    celery: Celery,
    interval_s: float,
    requeue_queued_after_s: float,
    max_attempts: int,
) -> None:
    """``reap_once`` every ``interval_s`` until cancelled; an error is logged, never fatal."""
    while True:
        try:
            await anyio.to_thread.run_sync(
                lambda: reap_once(
                    sessions=sessions,
                    celery=celery,
                    requeue_queued_after_s=requeue_queued_after_s,
                    max_attempts=max_attempts,
                ),
                abandon_on_cancel=True,
            )
        except Exception:
            log.exception("reaper pass failed; retrying in %.0f s", interval_s)
        await anyio.sleep(interval_s)
