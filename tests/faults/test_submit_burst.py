"""A burst of 1,000 submissions from 10 tenants against the API on PostgreSQL and Redis: every
202 is a queued row with exactly one broker message, every other answer is a 429, none is lost.

Half the tenants go through an API whose ``MAX_CONCURRENT_JOBS_PER_TENANT`` is high enough for
all their jobs, half through one with the default (4), so both the accepting and the refusing
path run under concurrency, on the same database."""

from __future__ import annotations

import base64
import json
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import select

from api.config import ApiSettings
from api.main import create_app
from store.auth import create_tenant_with_key
from store.db import dispose_engines, get_sessionmaker, session_scope
from store.models import Job
from store.queue import CPU_QUEUE
from tests.faults.conftest import PrivateRedis

TENANTS = 10
PER_TENANT = 100
DEFAULT_LIMIT = 4
THREADS = 16
SPEC: dict[str, Any] = {
    "dataset": {"builtin": "ring8"},
    "model": {"architecture": "mlp", "width": 16, "latent_dim": 4, "mlp_layers": 2},
    "training": {"steps": 10, "batch_size": 16, "device": "cpu"},
}


def queued_job_ids(redis: PrivateRedis) -> list[str]:
    """The job id of every message waiting on the train.cpu queue, its jobs' (Celery's JSON,
    base64 body)."""
    client = redis.client()
    try:
        messages = client.lrange(CPU_QUEUE, 0, -1)
    finally:
        client.close()
    return [json.loads(base64.b64decode(json.loads(m)["body"]))[0][0] for m in messages]


def test_a_burst_of_submissions_loses_nothing(
    pg_database: str, private_redis: PrivateRedis, tmp_path: Path
) -> None:
    sessions = get_sessionmaker(pg_database)
    keys: list[tuple[str, str]] = []  # (tenant id, API key)
    with session_scope(sessions) as session:
        for n in range(TENANTS):
            tenant, _, key = create_tenant_with_key(session, name=f"burst{n}")
            keys.append((tenant.id, key))

    def settings(limit: int) -> ApiSettings:
        return ApiSettings(
            data_dir=tmp_path / "data",
            database_url=pg_database,
            broker_url=private_redis.url,
            storage_url=(tmp_path / "objects").as_uri(),
            reaper_enabled=False,
            max_concurrent_jobs_per_tenant=limit,
            _env_file=None,  # type: ignore[call-arg]
        )

    roomy = TestClient(create_app(settings(TENANTS * PER_TENANT)))
    strict = TestClient(create_app(settings(DEFAULT_LIMIT)))
    requests = [(n, i) for i in range(PER_TENANT) for n in range(TENANTS)]  # tenants interleaved

    def submit(request: tuple[int, int]) -> tuple[int, int, str | None]:
        n, _ = request
        client = roomy if n < TENANTS // 2 else strict
        response = client.post(
            "/v1/jobs", json=SPEC, headers={"Authorization": f"Bearer {keys[n][1]}"}
        )
        body = response.json()
        return n, response.status_code, body.get("id") if response.status_code == 202 else None

    try:
        with roomy, strict, ThreadPoolExecutor(max_workers=THREADS) as pool:
            answers = list(pool.map(submit, requests, timeout=300))
    finally:
        dispose_engines()

    codes = Counter(code for _, code, _ in answers)
    assert set(codes) <= {202, 429}, codes
    accepted = {n: [job for m, code, job in answers if m == n and code == 202] for n in range(10)}
    for n in range(TENANTS):
        expected = PER_TENANT if n < TENANTS // 2 else DEFAULT_LIMIT
        assert len(accepted[n]) == expected, (n, len(accepted[n]))
    assert codes[429] == (TENANTS - TENANTS // 2) * (PER_TENANT - DEFAULT_LIMIT)

    with session_scope(sessions) as session:
        rows = session.execute(select(Job.id, Job.tenant_id, Job.status)).all()
    by_tenant = {tenant_id: n for n, (tenant_id, _) in enumerate(keys)}
    in_database = {n: sorted(j for j, t, _ in rows if by_tenant[t] == n) for n in range(TENANTS)}
    assert in_database == {n: sorted(jobs) for n, jobs in accepted.items()}  # none lost, none extra
    assert {status for _, _, status in rows} == {"queued"}
    messages = Counter(queued_job_ids(private_redis))
    assert set(messages) == {job for jobs in accepted.values() for job in jobs}
    assert set(messages.values()) == {1}  # each accepted job enqueued once
    dispose_engines()
