"""End to end on the production stack: PostgreSQL, Redis as the Celery broker, moto's S3 server and
real ``celery worker`` processes, one of which is SIGKILLed mid-job."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
import redis
from celery import Celery
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from store.db import session_scope
from store.jobs import latest_checkpoint, reap
from store.models import Checkpoint, JobEvent, Metric, Sample, TrainedModel, utcnow
from store.queue import CPU_QUEUE, enqueue_train, make_celery
from store.settings import Settings
from store.storage import S3Storage, model_weights_key, storage_from_url
from tests.fixtures.processes import WorkerProcess
from tests.fixtures.services import S3_CREDENTIALS, new_bucket_name
from tests.worker.conftest import Service, new_tenant, poll, tiny_spec

REPO_ROOT = Path(__file__).resolve().parents[2]
REDIS_URL = os.environ.get("GANFORGE_TEST_REDIS_URL", "redis://127.0.0.1:6379/5")
LEASE_S = 60.0


@pytest.fixture(scope="module")
def redis_url() -> str:
    """Redis database 5 for these tests, flushed first."""
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=5)
    try:
        client.flushdb()
    except redis.ConnectionError as error:
        pytest.fail(
            f"Redis is required by the worker tests and is not reachable at {REDIS_URL} "
            f"({error}); start it (see DEVELOPERS.md)",
            pytrace=False,
        )
    finally:
        client.close()
    return REDIS_URL


class Stack:
    def __init__(self, service: Service, env: dict[str, str], app: Celery, folder: Path) -> None:
        self.service, self.env, self.app, self.folder = service, env, app, folder
        self.workers: list[WorkerProcess] = []

    def start_worker(self) -> WorkerProcess:
        worker = WorkerProcess(self.env, self.folder / f"worker{len(self.workers) + 1}.log")
        self.workers.append(worker)
        return worker

    def live_worker(self) -> WorkerProcess:
        alive = [w for w in self.workers if w.process.poll() is None]
        return alive[-1] if alive else self.start_worker()

    def submit(self, spec: dict[str, object]) -> str:
        job_id = self.service.submit(spec)
        enqueue_train(job_id, queue=self.service.job(job_id).queue, app=self.app)
        return job_id

    def wait_for_status(self, job_id: str, status: str, timeout: float = 120) -> None:
        def reached() -> bool:
            current = self.service.job(job_id).status
            if current in ("failed", "cancelled", "succeeded") and current != status:
                job = self.service.job(job_id)
                pytest.fail(
                    f"job ended {current} ({job.error_code}: {job.error_message}); "
                    f"worker log:\n{self.logs()}",
                    pytrace=False,
                )
            return current == status

        try:
            poll(reached, timeout=timeout, what=f"job {job_id} to be {status}", interval=0.1)
        except pytest.fail.Exception:
            print(self.logs())
            raise

    def logs(self) -> str:
        return "\n".join(f"--- {w.log.name}\n{w.tail()}" for w in self.workers)


@pytest.fixture(scope="module")
def stack(
    pg_url: str,
    pg_sessionmaker: sessionmaker[Session],
    s3_endpoint: str,
    redis_url: str,
    data_dir: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Stack]:
    folder = tmp_path_factory.mktemp("e2e")
    bucket = new_bucket_name()
    S3Storage(bucket, endpoint_url=s3_endpoint, **S3_CREDENTIALS).ensure_bucket()
    env = {
        **os.environ,
        "DATA_DIR": str(folder / "data"),
        "DATABASE_URL": pg_url,
        "BROKER_URL": redis_url,
        "STORAGE_URL": f"s3://{bucket}/ganforge",
        "S3_ENDPOINT_URL": s3_endpoint,
        "S3_ACCESS_KEY_ID": S3_CREDENTIALS["access_key_id"],
        "S3_SECRET_ACCESS_KEY": S3_CREDENTIALS["secret_access_key"],
        "S3_REGION": S3_CREDENTIALS["region"],
        "GANFORGE_DATA_DIR": str(data_dir),
        "LEASE_S": str(LEASE_S),
        "HEARTBEAT_S": "2",
        "OMP_NUM_THREADS": "1",  # two cores: one for the worker, one for the test and services
    }
    settings = Settings(
        data_dir=folder / "data",
        database_url=pg_url,
        broker_url=redis_url,
        storage_url=env["STORAGE_URL"],
        s3_endpoint_url=s3_endpoint,
        s3_access_key_id=S3_CREDENTIALS["access_key_id"],
        s3_secret_access_key=S3_CREDENTIALS["secret_access_key"],  # type: ignore[arg-type]
        s3_region=S3_CREDENTIALS["region"],
        lease_s=LEASE_S,
        _env_file=None,  # type: ignore[call-arg]
    )
    service = Service(
        settings, pg_sessionmaker, storage_from_url(settings=settings), new_tenant(pg_sessionmaker)
    )
    stack = Stack(service, env, make_celery(settings), folder)
    try:
        yield stack
    finally:
        for worker in stack.workers:
            worker.stop(signal.SIGKILL)


def test_a_job_goes_from_queued_to_succeeded_through_a_real_worker(stack: Stack) -> None:
    stack.live_worker()
    job_id = stack.submit(tiny_spec(steps=40))

    stack.wait_for_status(job_id, "succeeded")

    service = stack.service
    job = service.job(job_id)
    assert (job.step, job.attempt, job.error_code) == (40, 1, None)
    statuses = [
        e.message for e in service.rows(JobEvent, job_id, JobEvent.seq) if e.code == "status"
    ]
    assert statuses == ["created → queued", "queued → running (attempt 1)", "running → succeeded"]
    assert [m.step for m in service.rows(Metric, job_id, Metric.step) if m.name == "g_loss"] == [
        5, 10, 15, 20, 25, 30, 35, 40
    ]  # fmt: skip
    samples = service.rows(Sample, job_id, Sample.step)
    assert [s.step for s in samples] == [10, 20, 30, 40]
    assert service.storage.get_bytes(samples[-1].storage_key).startswith(b"\x89PNG")
    [model] = service.rows(TrainedModel, job_id)
    assert model.id == job.model_id and service.storage.exists(model_weights_key(model.id))


def test_a_killed_worker_s_job_is_reaped_and_resumed_by_another_worker(stack: Stack) -> None:
    service = stack.service
    first = stack.live_worker()
    job_id = stack.submit(
        tiny_spec(steps=200, monitor={"checkpoint_every": 20, "sample_every": 50})
    )

    def checkpointed() -> bool:
        with session_scope(service.sessions) as session:
            return latest_checkpoint(session, job_id=job_id) is not None

    poll(checkpointed, timeout=60, what="the first checkpoint", interval=0.02)
    first.stop(signal.SIGKILL)
    job = service.job(job_id)
    assert job.status == "running", f"the job ended before the kill: {job.status}"
    with session_scope(service.sessions) as session:
        checkpoint = latest_checkpoint(session, job_id=job_id)
        assert checkpoint is not None
        resume_step = checkpoint.step
    assert 0 < resume_step < 200

    with session_scope(service.sessions) as session:  # the reaper, run once past the lease
        reaped = reap(session, now=utcnow() + timedelta(seconds=LEASE_S + 1))
    assert reaped == [job_id]
    assert service.job(job_id).status == "interrupted"
    enqueue_train(job_id, queue=CPU_QUEUE, app=stack.app)
    stack.start_worker()

    stack.wait_for_status(job_id, "succeeded")

    job = service.job(job_id)
    assert (job.attempt, job.step) == (2, 200)
    log = service.rows(JobEvent, job_id, JobEvent.seq)
    assert [e.message for e in log if e.code == "resumed"] == [f"resumed from step {resume_step}"]
    statuses = [e.message for e in log if e.code == "status"]
    assert statuses[2].startswith("running → interrupted (lease expired")
    assert statuses[3:] == ["interrupted → running (attempt 2)", "running → succeeded"]
    with session_scope(service.sessions) as session:
        duplicates = session.execute(
            select(Metric.name, Metric.step)
            .where(Metric.job_id == job_id)
            .group_by(Metric.name, Metric.step)
            .having(func.count() > 1)
        ).all()
        names = set(session.scalars(select(Metric.name).where(Metric.job_id == job_id)))
    assert duplicates == []
    for name in ("d_loss", "g_loss", "images_per_s"):
        steps = [m.step for m in service.rows(Metric, job_id, Metric.step) if m.name == name]
        assert steps == list(range(5, 201, 5)), name
    assert {"d_loss", "g_loss"} <= names
    checkpoints = service.rows(Checkpoint, job_id, Checkpoint.step)
    assert [c.step for c in checkpoints] == [160, 180, 200]  # KEEP_CHECKPOINTS newest
    assert service.storage.list(f"jobs/{job_id}/checkpoints/") == [
        c.storage_key for c in checkpoints
    ]
    assert len(service.rows(TrainedModel, job_id)) == 1


def test_sigterm_hands_the_running_job_back_to_the_queue(stack: Stack) -> None:
    service = stack.service
    worker = stack.live_worker()
    job_id = stack.submit(
        tiny_spec(steps=100_000, monitor={"checkpoint_every": 100_000, "sample_every": 100_000})
    )
    poll(
        lambda: any(m.name == "d_loss" for m in service.rows(Metric, job_id)),
        timeout=60,
        what="the first metrics",
    )

    assert worker.stop(signal.SIGTERM) == 0, worker.tail()

    job = service.job(job_id)
    assert job.status == "interrupted", stack.logs()
    [checkpoint] = service.rows(Checkpoint, job_id)
    assert checkpoint.step == job.step > 0
    # The dying worker did not claim the job it had just handed back, and the hand-back is not
    # an error.
    assert (job.attempt, job.error_code, job.error_message) == (1, None, None), stack.logs()
    statuses = [e for e in service.rows(JobEvent, job_id, JobEvent.seq) if e.code == "status"]
    assert [e.message.split(":")[0] for e in statuses] == [
        "created → queued",
        "queued → running (attempt 1)",
        "running → interrupted",
    ]
    assert statuses[-1].level == "info"
    client = redis.Redis.from_url(stack.env["BROKER_URL"])
    try:
        assert client.llen(CPU_QUEUE) == 1  # re-enqueued for the next worker
    finally:
        client.close()
