"""Submit latency under a burst: 1,000 ``POST /v1/jobs`` from 10 tenants against real API
processes on PostgreSQL and Redis (loopback only).

    .venv/bin/python -m benchmarks.submit_burst [--submits 1000] [--tenants 10] [--concurrency 16]

Half the tenants go through an API whose ``MAX_CONCURRENT_JOBS_PER_TENANT`` leaves room for all
their jobs (each accepted job is validated, inserted, committed and enqueued), half through one
with the default limit of 4 (after four jobs, a 429). Creates a database
``ganforge_burst_<pid>`` (user postgres on 127.0.0.1:5432, trust auth), starts its own
``redis-server`` on a free port (no persistence) and two uvicorn processes, measures with httpx
from this process (on the same cores), checks that every 202 is a queued row with one broker
message, and tears it all down, also on error.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import shutil
import subprocess
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import redis

from benchmarks.local_services import PG, free_port, pg_admin, stop
from store.queue import CPU_QUEUE

DEFAULT_LIMIT = 4
SPEC: dict[str, Any] = {
    "dataset": {"builtin": "ring8"},
    "model": {"architecture": "mlp", "width": 16, "latent_dim": 4, "mlp_layers": 2},
    "training": {"steps": 10, "batch_size": 16, "device": "cpu"},
}


def wait_ready(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 120
    while True:
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"the API at {url} did not start:\n{log.read_text()[-3000:]}")
        time.sleep(0.2)  # polling interval


async def burst(
    urls: list[str], keys: list[str], submits: int, concurrency: int
) -> list[tuple[int, int, float, str | None]]:
    """(tenant, status code, seconds, job id) per submission; tenants take turns."""
    requests = iter(range(submits))
    answers: list[tuple[int, int, float, str | None]] = []
    half = len(keys) // 2
    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(timeout=60, limits=limits) as client:

        async def one_client() -> None:
            for i in requests:
                tenant = i % len(keys)
                url = urls[0] if tenant < half else urls[1]
                headers = {"Authorization": f"Bearer {keys[tenant]}"}
                start = time.perf_counter()
                response = await client.post(f"{url}/v1/jobs", json=SPEC, headers=headers)
                took = time.perf_counter() - start
                job = response.json().get("id") if response.status_code == 202 else None
                answers.append((tenant, response.status_code, took, job))

        await asyncio.gather(*(one_client() for _ in range(concurrency)))
    return answers


def line(name: str, seconds: list[float], wall: float | None = None) -> str:
    if not seconds:
        return f"{name}: none"
    p50, p99 = np.percentile(seconds, [50, 99]) * 1000
    rate = f", {len(seconds) / wall:.0f} req/s" if wall else ""
    return f"{name}: {len(seconds)} req{rate}, p50 {p50:.1f} ms, p99 {p99:.1f} ms, max " + (
        f"{max(seconds) * 1000:.1f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--submits", type=int, default=1000)
    parser.add_argument("--tenants", type=int, default=10)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()

    from sqlalchemy import select

    from ganforge.cli.server import api_command
    from store.auth import create_tenant_with_key
    from store.db import dispose_engines, get_sessionmaker, session_scope
    from store.migrate import upgrade
    from store.models import Job

    db_name = f"ganforge_burst_{os.getpid()}"
    database_url = f"postgresql+psycopg://{PG['user']}@{PG['host']}:{PG['port']}/{db_name}"
    folder = Path(tempfile.mkdtemp(prefix="ganforge-burst-"))
    redis_port = free_port()
    broker_url = f"redis://127.0.0.1:{redis_port}/0"
    processes: list[subprocess.Popen[bytes]] = []
    try:
        with open(folder / "redis.log", "wb") as log:
            processes.append(
                subprocess.Popen(
                    [
                        "redis-server",
                        "--port",
                        str(redis_port),
                        "--bind",
                        "127.0.0.1",
                        "--save",
                        "",
                        "--appendonly",
                        "no",
                    ],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )
        pg_admin(f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)')
        pg_admin(f'CREATE DATABASE "{db_name}"')
        upgrade(database_url)
        sessions = get_sessionmaker(database_url)
        keys, tenants, warmup_keys = [], [], []
        with session_scope(sessions) as session:
            for n in range(args.tenants):
                tenant, _, key = create_tenant_with_key(session, name=f"burst{n}")
                keys.append(key)
                tenants.append(tenant.id)
            for n in range(2):
                warmup_keys.append(create_tenant_with_key(session, name=f"warmup{n}")[2])

        urls = []
        for name, limit in (("roomy", args.submits), ("strict", DEFAULT_LIMIT)):
            port = free_port()
            env = {
                **os.environ,
                "DATA_DIR": str(folder / name),
                "DATABASE_URL": database_url,
                "BROKER_URL": broker_url,
                "STORAGE_URL": (folder / "objects").as_uri(),
                "REAPER_ENABLED": "false",
                "MAX_CONCURRENT_JOBS_PER_TENANT": str(limit),
            }
            log_path = folder / f"api-{name}.log"
            with open(log_path, "wb") as log:
                process = subprocess.Popen(
                    api_command("127.0.0.1", port),
                    cwd=folder, env=env, stdout=log, stderr=subprocess.STDOUT,
                )  # fmt: skip
            processes.append(process)
            urls.append(f"http://127.0.0.1:{port}")
            wait_ready(urls[-1], process, log_path)

        print(
            f"machine: {os.cpu_count()} CPUs; 2 APIs (1 uvicorn worker each: limit "
            f"{args.submits} for tenants 0-{args.tenants // 2 - 1}, {DEFAULT_LIMIT} for the rest); "
            f"PostgreSQL {db_name}; broker {broker_url}; client: httpx in this process, "
            f"c={args.concurrency}",
            flush=True,
        )
        # A fresh API process is slow on its first requests (lazy imports, the first spec
        # validation, new connections): one round of ``concurrency`` requests to each, from two
        # tenants of their own, is timed apart.
        warm = asyncio.run(burst(urls, warmup_keys, 2 * args.concurrency, args.concurrency))
        print(line("warm-up (fresh processes, not in the figures below)", [a[2] for a in warm]))
        start = time.perf_counter()
        answers = asyncio.run(burst(urls, keys, args.submits, args.concurrency))
        wall = time.perf_counter() - start

        warmed_up = {job for _, _, _, job in warm if job}
        codes = Counter(code for _, code, _, _ in answers)
        accepted = {job for _, code, _, job in answers if code == 202}
        print(
            line(f"all submissions ({dict(sorted(codes.items()))})", [a[2] for a in answers], wall)
        )
        print(line("  accepted (202)", [a[2] for a in answers if a[1] == 202]))
        print(line("  over the limit (429)", [a[2] for a in answers if a[1] == 429]))

        with session_scope(sessions) as session:
            rows = session.execute(
                select(Job.id, Job.status).where(Job.tenant_id.in_(tenants))
            ).all()
        client = redis.Redis(port=redis_port)
        messages = Counter(
            job
            for m in client.lrange(CPU_QUEUE, 0, -1)
            if (job := json.loads(base64.b64decode(json.loads(m)["body"]))[0][0]) not in warmed_up
        )
        client.close()
        checks = {
            "only 202 and 429": set(codes) <= {202, 429},
            "every 202 is a queued row": {r.id for r in rows} == accepted
            and {r.status for r in rows} <= {"queued"},
            "every 202 has one broker message": set(messages) == accepted
            and set(messages.values()) <= {1},
        }
        print("checks: " + ", ".join(f"{k}: {'ok' if v else 'FAILED'}" for k, v in checks.items()))
        if not all(checks.values()):
            raise SystemExit(1)
    finally:
        for process in reversed(processes):
            stop(process)
        dispose_engines()
        pg_admin(f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)')
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
