"""Object storage unreachable when a checkpoint is due: the S3 client's tries are bounded
(``STORAGE_TIMEOUT_S``, ``STORAGE_MAX_ATTEMPTS``), then the job fails as storage_unavailable. It
never hangs, whether the endpoint refuses connections or accepts them and never answers."""

from __future__ import annotations

import socket
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from store.db import dispose_engines, get_sessionmaker, session_scope
from store.jobs import latest_checkpoint
from store.migrate import upgrade
from store.models import Checkpoint
from store.settings import Settings
from store.storage import S3Storage, storage_from_url
from tests.faults.conftest import poll
from tests.fixtures.services import S3_CREDENTIALS, MotoServer, new_bucket_name
from tests.worker.conftest import Service, new_tenant, tiny_spec
from worker.runner import run_job

TIMEOUT_S = 1.0
ATTEMPTS = 2


@pytest.mark.parametrize("outage", ["refused", "silent"])
def test_storage_lost_at_a_checkpoint_fails_the_job_in_bounded_time(
    outage: str, private_s3: MotoServer, tmp_path: Path, data_dir: Path
) -> None:
    bucket = new_bucket_name()
    S3Storage(bucket, endpoint_url=private_s3.url, **S3_CREDENTIALS).ensure_bucket()
    database_url = f"sqlite:///{tmp_path / 'ganforge.db'}"
    upgrade(database_url)
    settings = Settings(
        data_dir=tmp_path,
        database_url=database_url,
        broker_url="",
        storage_url=f"s3://{bucket}/ganforge",
        s3_endpoint_url=private_s3.url,
        s3_access_key_id=S3_CREDENTIALS["access_key_id"],
        s3_secret_access_key=S3_CREDENTIALS["secret_access_key"],  # type: ignore[arg-type]
        s3_region=S3_CREDENTIALS["region"],
        ganforge_data_dir=data_dir,
        storage_timeout_s=TIMEOUT_S,
        storage_max_attempts=ATTEMPTS,
        lease_s=30,
        heartbeat_s=0.5,
        _env_file=None,  # type: ignore[call-arg]
    )
    sessions = get_sessionmaker(database_url)
    service = Service(settings, sessions, storage_from_url(settings=settings), new_tenant(sessions))
    spec = tiny_spec(steps=1_000_000, monitor={"checkpoint_every": 200, "sample_every": 1_000_000})
    job_id = service.submit(spec)

    def checkpointed() -> bool:
        with session_scope(sessions) as session:
            return latest_checkpoint(session, job_id=job_id) is not None

    silent: socket.socket | None = None
    try:
        with ThreadPoolExecutor(max_workers=1) as pool:
            running = pool.submit(run_job, job_id, settings=settings)
            poll(checkpointed, timeout=60, what="the first checkpoint")
            private_s3.stop()
            if outage == "silent":  # the port accepts connections and never answers
                silent = socket.socket()
                silent.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                silent.bind(("127.0.0.1", private_s3.port))
                silent.listen(64)
            lost_at = time.monotonic()
            outcome = running.result(timeout=120)
            took = time.monotonic() - lost_at
    finally:
        if silent is not None:
            silent.close()
        dispose_engines()

    job = service.job(job_id)
    assert (outcome.status, job.status, job.error_code) == (
        "failed",
        "failed",
        "storage_unavailable",
    )
    assert "object storage did not take the checkpoint of step" in (job.error_message or "")
    assert job.lease_expires_at is None
    # The next checkpoint was due within 200 steps (well under a second here), then at most
    # ATTEMPTS tries of TIMEOUT_S each plus boto3's backoff between them.
    print(f"storage {outage}: the job failed {took:.1f} s after storage went away")
    assert took < 30, f"took {took:.1f} s"
    checkpoints = service.rows(Checkpoint, job_id, Checkpoint.step)
    assert checkpoints[0].step == 200 and job.step > checkpoints[-1].step
