"""Real ``celery worker`` processes stopped in the two ways a worker goes: asked to (SIGTERM, as
on Ctrl-C of ``ganforge up``) and killed (SIGKILL, a crash or the OOM killer)."""

from __future__ import annotations

import signal
from pathlib import Path

from api.services.reaper import reap_once
from store.db import dispose_engines, get_sessionmaker
from store.migrate import upgrade
from store.models import JobEvent, Metric
from store.queue import CPU_QUEUE, enqueue_train, make_celery
from store.settings import Settings
from store.storage import storage_from_url
from tests.faults.conftest import PrivateRedis, WorkerProcess, poll, shared_backends, worker_env
from tests.worker.conftest import Service, new_tenant, tiny_spec


def status_events(service: Service, job_id: str) -> list[JobEvent]:
    events = service.rows(JobEvent, job_id, JobEvent.seq)
    return [e for e in events if e.code == "status"]


def test_a_stopping_embedded_worker_does_not_claim_the_job_it_handed_back(
    tmp_path: Path, data_dir: Path
) -> None:
    """The embedded stack (SQLite, a storage folder, kombu's filesystem queue): the stopping
    worker used to receive the message it had just re-sent, claim attempt 2, train a step and
    hand it back again."""
    settings = Settings(
        data_dir=tmp_path,
        ganforge_data_dir=data_dir,
        _env_file=None,  # type: ignore[call-arg]
    )
    settings.ensure_dirs()
    upgrade(settings.database_url)
    sessions = get_sessionmaker(settings.database_url)
    service = Service(settings, sessions, storage_from_url(settings=settings), new_tenant(sessions))
    env = worker_env(DATA_DIR=str(tmp_path), GANFORGE_DATA_DIR=str(data_dir), HEARTBEAT_S="1")
    queue = Path(settings.broker_transport_options()["data_folder_in"])
    job_id = service.submit(
        tiny_spec(steps=600, monitor={"checkpoint_every": 100_000, "sample_every": 100_000})
    )
    first = WorkerProcess(env, tmp_path / "worker1.log")
    try:
        enqueue_train(job_id, queue=CPU_QUEUE, app=make_celery(settings))
        poll(
            lambda: service.rows(Metric, job_id),
            timeout=90,
            what=f"the first metrics; log:\n{first.tail()}",
        )
        assert first.stop(signal.SIGTERM) == 0, first.tail()

        job = service.job(job_id)
        assert (job.status, job.attempt) == ("interrupted", 1), first.tail()
        assert (job.error_code, job.error_message) == (None, None)
        statuses = status_events(service, job_id)
        assert [e.message.split(":")[0] for e in statuses] == [
            "created → queued",
            "queued → running (attempt 1)",
            "running → interrupted",
        ], first.tail()
        assert statuses[-1].level == "info"
        assert any(queue.iterdir()), "the job's message was not left for the next worker"

        second = WorkerProcess(env, tmp_path / "worker2.log")  # the next `ganforge up`
        try:
            poll(
                lambda: service.job(job_id).status == "succeeded",
                timeout=120,
                what=f"the resumed job to succeed; log:\n{second.tail()}",
            )
        finally:
            second.stop()
    finally:
        first.stop(signal.SIGKILL)
        dispose_engines()

    job = service.job(job_id)
    assert (job.attempt, job.step, job.workers_lost) == (2, 600, 0)
    resumed = [
        e.message for e in service.rows(JobEvent, job_id, JobEvent.seq) if e.code == "resumed"
    ]
    assert len(resumed) == 1


def test_a_job_that_keeps_losing_its_worker_fails_after_max_attempts(
    private_redis: PrivateRedis, pg_database: str, tmp_path: Path, data_dir: Path
) -> None:
    """Each attempt's worker is SIGKILLed while it trains; the reaper re-enqueues the job twice
    and fails it the third time (MAX_ATTEMPTS 3) instead of sending it round again."""
    backends = shared_backends(
        tmp_path, pg_database, private_redis.url, data_dir,
        settings={"max_attempts": 3}, LEASE_S="3", HEARTBEAT_S="0.5", MAX_ATTEMPTS="3",
    )  # fmt: skip
    settings, env = backends.settings, backends.env
    sessions = get_sessionmaker(pg_database)
    service = Service(settings, sessions, storage_from_url(settings=settings), new_tenant(sessions))
    celery = make_celery(settings)
    job_id = service.submit(tiny_spec(steps=1_000_000, monitor={"checkpoint_every": 50}))
    enqueue_train(job_id, queue=CPU_QUEUE, app=celery)
    reaped: list[str] = []

    def reaper_pass() -> str:
        reaped.extend(
            reap_once(
                sessions=sessions,
                celery=celery,
                requeue_queued_after_s=600,
                max_attempts=settings.max_attempts,
            )
        )
        status = service.job(job_id).status
        return status if status != "running" else ""

    try:
        for attempt in (1, 2, 3):
            worker = WorkerProcess(env, tmp_path / f"worker{attempt}.log")

            def training(attempt: int = attempt) -> bool:
                job = service.job(job_id)
                return job.attempt == attempt and job.step > 0

            try:
                poll(
                    training, timeout=120, what=f"attempt {attempt} to train; log:\n{worker.tail()}"
                )
            finally:
                worker.stop(signal.SIGKILL)  # the worker dies with the job
            after = poll(reaper_pass, timeout=30, what="the lease to expire and be reaped")
            assert after == ("interrupted" if attempt < 3 else "failed"), after
    finally:
        dispose_engines()

    job = service.job(job_id)
    assert (job.status, job.error_code, job.attempt, job.workers_lost) == (
        "failed",
        "worker_lost",
        3,
        3,
    )
    assert "lost on 3 attempts (the last was attempt 3)" in (job.error_message or "")
    assert reaped == [job_id, job_id]  # re-enqueued after the first two losses only
    messages = [e.message for e in status_events(service, job_id)]
    assert messages[-1].startswith("running → failed (lease expired; worker ")
    assert sum("→ running (attempt" in m for m in messages) == 3
