"""Redis (the broker) restarted with jobs queued and every message lost: the reaper re-enqueues
them from the database, and each job runs exactly once, duplicate messages included."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from api.services.reaper import reap_once
from store.db import dispose_engines, get_sessionmaker, session_scope
from store.models import Job, JobEvent, TrainedModel
from store.queue import CPU_QUEUE, enqueue_train, make_celery
from store.storage import storage_from_url
from tests.faults.conftest import PrivateRedis, WorkerProcess, poll, shared_backends
from tests.worker.conftest import Service, new_tenant, tiny_spec

QUEUED_JOBS = 4


def test_a_broker_restart_loses_queued_messages_and_every_job_still_runs_once(
    private_redis: PrivateRedis, pg_database: str, tmp_path: Path, data_dir: Path
) -> None:
    backends = shared_backends(
        tmp_path, pg_database, private_redis.url, data_dir,
        settings={"requeue_queued_after_s": 1.0}, LEASE_S="60", HEARTBEAT_S="1",
    )  # fmt: skip
    settings = backends.settings
    sessions: sessionmaker[Session] = get_sessionmaker(pg_database)
    service = Service(settings, sessions, storage_from_url(settings=settings), new_tenant(sessions))
    celery = make_celery(settings)
    worker = WorkerProcess(backends.env, tmp_path / "worker.log")
    try:
        busy = service.submit(tiny_spec(steps=1500, monitor={"checkpoint_every": 500}))
        enqueue_train(busy, queue=CPU_QUEUE, app=celery)
        poll(
            lambda: service.job(busy).status == "running",
            timeout=90,
            what=f"the worker to take the first job; log:\n{worker.tail()}",
        )
        queued = [service.submit(tiny_spec(steps=20)) for _ in range(QUEUED_JOBS)]
        for job_id in queued:
            enqueue_train(job_id, queue=CPU_QUEUE, app=celery)
        redis = private_redis.client()
        assert redis.llen(CPU_QUEUE) == QUEUED_JOBS  # the worker is busy: they wait

        private_redis.stop()  # no persistence: every message is gone
        private_redis.start()
        assert redis.llen(CPU_QUEUE) == 0
        redis.close()
        assert service.job(busy).status == "running"  # the worker lives through the restart

        # The reaper's pass, as in the API's loop: stale queued jobs go back on the broker. Two
        # passes a second apart send each job twice; the claim makes the duplicate harmless.
        sent: list[str] = []
        for _ in range(2):
            this_pass: set[str] = set()

            def covered(this_pass: set[str] = this_pass) -> bool:
                ids = reap_once(
                    sessions=sessions,
                    celery=celery,
                    requeue_queued_after_s=settings.requeue_queued_after_s,
                    max_attempts=settings.max_attempts,
                )
                sent.extend(ids)
                this_pass.update(ids)
                return set(queued) <= this_pass

            poll(covered, timeout=30, what="the reaper to re-enqueue the queued jobs")
        assert busy not in sent and all(sent.count(job_id) >= 2 for job_id in queued)

        def all_done() -> bool:
            statuses = {service.job(j).status for j in [busy, *queued]}
            if statuses & {"failed", "cancelled"}:
                pytest.fail(f"a job ended badly: {statuses}\n{worker.tail()}", pytrace=False)
            return statuses == {"succeeded"}

        poll(all_done, timeout=240, what=f"every job to succeed; log:\n{worker.tail()}")
    finally:
        worker.stop()
        dispose_engines()

    with session_scope(sessions) as session:
        for job_id in [busy, *queued]:
            job = session.get(Job, job_id)
            assert job is not None and (job.attempt, job.workers_lost) == (1, 0), job_id
            claims = session.scalars(
                select(JobEvent.message).where(
                    JobEvent.job_id == job_id, JobEvent.message.like("% → running%")
                )
            ).all()
            assert claims == ["queued → running (attempt 1)"], job_id
            models = session.scalars(select(TrainedModel.id).where(TrainedModel.job_id == job_id))
            assert len(models.all()) == 1, job_id
    dispose_engines()
