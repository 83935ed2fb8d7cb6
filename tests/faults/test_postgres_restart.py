"""PostgreSQL restarted while a job trains: the API says 503 meanwhile and recovers, the worker
holds its writes and the job succeeds with every metric point exactly once."""

from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from api.config import api_settings
from api.main import create_app
from store.auth import create_tenant_with_key
from store.db import dispose_engines, get_sessionmaker, session_scope
from store.jobs import create_job
from store.models import JobEvent, Metric
from store.settings import Settings
from tests.faults.conftest import PrivatePostgres, poll
from tests.worker.conftest import tiny_spec
from worker.runner import run_job

STEPS = 3000
DOWN_S = 2.0
LOG_EVERY = 5


def test_a_postgres_restart_mid_job_loses_no_point_and_the_api_recovers(
    private_pg: PrivatePostgres,
    tmp_path: Path,
    data_dir: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="ganforge.worker")
    settings = Settings(
        data_dir=tmp_path,
        database_url=private_pg.url,
        broker_url="",
        storage_url="",
        ganforge_data_dir=data_dir,
        lease_s=60,  # longer than the blink: the job keeps its lease
        heartbeat_s=0.5,
        _env_file=None,  # type: ignore[call-arg]
    )
    settings.ensure_dirs()
    sessions = get_sessionmaker(private_pg.url)
    spec = tiny_spec(
        steps=STEPS,
        monitor={"log_every": LOG_EVERY, "checkpoint_every": 1000, "sample_every": 1000},
    )
    with session_scope(sessions) as session:
        tenant, _, key = create_tenant_with_key(session, name="blink")
        job_id = create_job(session, tenant_id=tenant.id, spec=spec)[0].id
    headers = {"Authorization": f"Bearer {key}"}
    app = create_app(api_settings(settings).model_copy(update={"reaper_enabled": False}))

    def points() -> int:
        with session_scope(sessions) as session:
            query = select(func.count()).where(Metric.job_id == job_id, Metric.name == "d_loss")
            return int(session.scalar(query) or 0)

    try:
        with TestClient(app) as client, ThreadPoolExecutor(max_workers=1) as pool:
            running = pool.submit(run_job, job_id, settings=settings)
            poll(lambda: points() >= 20, timeout=60, what="the first metric points")

            private_pg.stop()
            stopped = time.monotonic()
            down = client.get(f"/v1/jobs/{job_id}", headers=headers)
            assert down.status_code == 503, down.text
            assert down.json()["error"]["code"] == "unavailable"
            assert down.headers["Retry-After"] == "5"
            # The worker trains on, holding what it cannot write.
            poll(
                lambda: "database unreachable; holding" in caplog.text,
                timeout=30,
                what="the worker to hold its writes",
            )
            # Down for DOWN_S: every answer meanwhile is a 503, and training goes on.
            while time.monotonic() - stopped < DOWN_S:
                assert client.get("/v1/jobs", headers=headers).status_code == 503
                time.sleep(0.1)  # polling interval
            assert not running.done(), "the job ended before the database came back"

            private_pg.start()
            poll(
                lambda: client.get(f"/v1/jobs/{job_id}", headers=headers).status_code == 200,
                timeout=30,
                what="the API to answer again",
            )
            back = time.monotonic()
            outcome = running.result(timeout=240)
    finally:
        dispose_engines()

    assert outcome.status == "succeeded", outcome
    print(f"postgres down for {back - stopped:.1f} s (stop to the API's first 200 again)")
    assert "database reachable again" in caplog.text
    expected = list(range(LOG_EVERY, STEPS + 1, LOG_EVERY))
    with session_scope(sessions) as session:
        for name in ("d_loss", "g_loss", "images_per_s"):
            steps = session.scalars(
                select(Metric.step)
                .where(Metric.job_id == job_id, Metric.name == name)
                .order_by(Metric.step)
            ).all()
            assert list(steps) == expected, name  # none lost, none twice
        statuses = session.scalars(
            select(JobEvent.message)
            .where(JobEvent.job_id == job_id, JobEvent.code == "status")
            .order_by(JobEvent.seq)
        ).all()
    assert statuses == ["created → queued", "queued → running (attempt 1)", "running → succeeded"]
    dispose_engines()
