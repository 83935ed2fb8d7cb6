"""Three real ``celery worker`` processes (the production arguments: solo pool, one task at a
time) against PostgreSQL and Redis, a dozen tiny jobs from three tenants, and one worker SIGKILLed
while it trains: every job succeeds exactly once, the killed worker's job resumes on another, and
the first tenant's burst does not hold every worker while the others wait (docs/scaling.md)."""

from __future__ import annotations

import signal
from pathlib import Path

from sqlalchemy import func, select

from api.services.reaper import reap_once
from store.db import dispose_engines, get_sessionmaker, session_scope
from store.models import Checkpoint, Job, JobEvent, TrainedModel
from store.queue import enqueue_train, make_celery
from store.storage import storage_from_url
from tests.faults.conftest import PrivateRedis, WorkerProcess, poll, shared_backends
from tests.worker.conftest import Service, new_tenant, tiny_spec

SHORT = {"log_every": 10, "sample_every": 40, "checkpoint_every": 40}


def claims(service: Service, job_id: str) -> list[str]:
    """The job's status events, in order (each claim is one ``→ running (attempt n)``)."""
    events = service.rows(JobEvent, job_id, JobEvent.seq)
    return [e.message for e in events if e.code == "status"]


def test_three_workers_run_every_job_once_fairly_and_lose_none_to_a_kill(
    private_redis: PrivateRedis, pg_database: str, tmp_path: Path, data_dir: Path
) -> None:
    backends = shared_backends(
        tmp_path, pg_database, private_redis.url, data_dir, LEASE_S="5", HEARTBEAT_S="0.5"
    )
    settings = backends.settings
    sessions = get_sessionmaker(pg_database)
    storage = storage_from_url(settings=settings)
    tenants = {name: Service(settings, sessions, storage, new_tenant(sessions, name))
               for name in ("a", "b", "c")}  # fmt: skip
    celery = make_celery(settings)

    # a's burst of 6 is queued first (its first job long enough to be killed mid-run), then b's
    # 3 and c's 3, and one job for a GPU, which no worker of this machine serves.
    jobs = {
        "a": [tenants["a"].submit(tiny_spec(steps=1500, monitor={"checkpoint_every": 100}))]
        + [tenants["a"].submit(tiny_spec(steps=80, monitor=SHORT)) for _ in range(5)],
        "b": [tenants["b"].submit(tiny_spec(steps=80, monitor=SHORT)) for _ in range(3)],
        "c": [tenants["c"].submit(tiny_spec(steps=80, monitor=SHORT)) for _ in range(3)],
    }
    gpu_job = tenants["b"].submit(tiny_spec(steps=80, training={"device": "cuda"}))
    every = [job_id for ids in jobs.values() for job_id in ids]
    service = tenants["a"]  # reads any tenant's rows
    for job_id in [*every, gpu_job]:
        job = service.job(job_id)
        enqueue_train(job_id, queue=job.queue, app=celery)

    workers = [WorkerProcess(backends.env, tmp_path / f"worker{i}.log") for i in (1, 2, 3)]

    def logs() -> str:
        return "\n".join(f"--- {w.log.name}\n{w.tail()}" for w in workers)

    try:
        victim = jobs["a"][0]

        def training_past_a_checkpoint() -> Job | None:
            with session_scope(sessions) as session:
                checkpoint = session.scalar(
                    select(func.max(Checkpoint.step)).where(Checkpoint.job_id == victim)
                )
            job = service.job(victim)
            return job if checkpoint and job.status == "running" else None

        running = poll(
            training_past_a_checkpoint, timeout=90, what=f"{victim} to checkpoint; logs:\n{logs()}"
        )
        killed_pid = int(running.worker_id.split(":")[-2])  # host:pid:random
        [killed] = [w for w in workers if w.process.pid == killed_pid]
        killed.stop(signal.SIGKILL)

        def all_succeeded() -> bool:
            reap_once(  # the API's reaper loop: the killed worker's lease runs out
                sessions=sessions,
                celery=celery,
                requeue_queued_after_s=600,
                max_attempts=settings.max_attempts,
            )
            statuses = [service.job(job_id).status for job_id in every]
            assert "failed" not in statuses, logs()
            return all(status == "succeeded" for status in statuses)

        poll(all_succeeded, timeout=120, what=f"every job to succeed; logs:\n{logs()}")
    finally:
        for worker in workers:
            worker.stop(signal.SIGKILL)
        dispose_engines()

    # Exactly once: one success and one model a job; one claim each, but the victim's two.
    for job_id in every:
        messages = claims(service, job_id)
        runs = [m for m in messages if "→ running (attempt" in m]
        assert sum("→ succeeded" in m for m in messages) == 1, messages
        with session_scope(sessions) as session:
            models = session.scalar(
                select(func.count()).where(TrainedModel.job_id == job_id)
            )  # fmt: skip
        assert models == 1
        assert len(runs) == (2 if job_id == victim else 1), (job_id, messages)
    job = service.job(victim)
    assert (job.attempt, job.workers_lost, job.step) == (2, 1, 1500)
    assert f":{killed_pid}:" not in (job.worker_id or "")  # finished by another worker
    events = service.rows(JobEvent, victim, JobEvent.seq)
    assert any(e.code == "resumed" for e in events)  # from its checkpoint, not from step 0
    assert any("running → interrupted (lease expired" in e.message for e in events)

    # Fair: b's and c's first jobs started before a's second, though a queued all six first.
    started = {job_id: service.job(job_id).started_at for job_id in every}
    order = sorted(every, key=lambda job_id: started[job_id])
    assert order[:3] == [jobs["a"][0], jobs["b"][0], jobs["c"][0]], order

    # Routed: the GPU job waits on its own queue, untouched by these CPU workers.
    gpu = service.job(gpu_job)
    assert (gpu.queue, gpu.status, gpu.attempt) == ("train.gpu.1", "queued", 0)
    redis = private_redis.client()
    try:
        assert redis.llen("train.gpu.1") == 1
    finally:
        redis.close()
