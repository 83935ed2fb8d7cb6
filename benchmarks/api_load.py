"""Load benchmark of the HTTP API against PostgreSQL + Redis on this machine (loopback only).

    .venv/bin/python benchmarks/api_load.py [--polls 2000] [--submits 300] [--generations 100]
                                             [--latency-runs 5] [--concurrency 16] [--workers 1]

Creates a database ``ganforge_bench_<pid>`` (user postgres on 127.0.0.1:5432, trust auth), a temp
DATA_DIR with local storage, Redis db 7 as the broker (flushed at start and end), starts the API
with uvicorn (and later one Celery worker, as ``ganforge worker`` does), measures, and tears it
all down, also on error. The client runs in this process, on the same cores as the server.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import httpx
import numpy as np
import psycopg
import redis
from celery import Celery

PG = {"host": "127.0.0.1", "port": 5432, "user": "postgres"}
BROKER_URL = "redis://127.0.0.1:6379/7"
FINISHED = {"succeeded", "failed", "cancelled"}
MONITOR = {
    "log_every": 1,
    "sample_every": 100_000,
    "eval_every": 100_000,
    "checkpoint_every": 100_000,
    "metrics": [],
}
RING8 = {
    "dataset": {"builtin": "ring8"},
    "model": {"architecture": "mlp", "width": 16, "latent_dim": 4, "mlp_layers": 2},
    "training": {"steps": 4, "batch_size": 16, "seed": 7, "device": "cpu"},
    "monitor": MONITOR,
}
DCGAN32 = {  # the network size matters here, not its quality
    "dataset": {"builtin": "digits"},
    "model": {
        "architecture": "dcgan",
        "image_size": 32,
        "width": 64,
        "latent_dim": 128,
        "conditioning": "concat",
    },
    "training": {"steps": 2, "batch_size": 16, "seed": 7, "device": "cpu"},
    "monitor": MONITOR,
}

Request = Callable[[httpx.AsyncClient, int], Awaitable[httpx.Response]]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def pg_admin(sql: str) -> None:
    with psycopg.connect(**PG, dbname="postgres", autocommit=True, connect_timeout=5) as admin:
        admin.execute(sql)  # type: ignore[arg-type]


def stop(process: subprocess.Popen[bytes] | None, timeout: float) -> None:
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def publish_dcgan(database_url: str, storage_url: str, tenant_id: str) -> str:
    """Train the 32×32 DCGAN for 2 steps and register it, as a succeeding worker would."""
    from gan_engine.artifacts import CONFIG_FILE, WEIGHTS_FILE
    from gan_engine.run import export_files, load_training_data
    from gan_engine.spec import parse_spec
    from gan_engine.trainer import Trainer
    from store import jobs as store_jobs
    from store.db import get_sessionmaker, session_scope
    from store.models import new_id
    from store.storage import model_config_key, model_weights_key, storage_from_url

    spec = parse_spec(DCGAN32)
    trainer = Trainer(*load_training_data(spec))
    files = export_files(trainer, trainer.fit())
    shape = json.loads(files[CONFIG_FILE])["sample_shape"]  # (C, H, W)
    model_id = new_id("mdl")
    storage = storage_from_url(storage_url)
    storage.put_bytes(model_weights_key(model_id), files[WEIGHTS_FILE])
    storage.put_bytes(model_config_key(model_id), files[CONFIG_FILE])
    with session_scope(get_sessionmaker(database_url)) as session:
        job, _ = store_jobs.create_job(session, tenant_id=tenant_id, spec=spec)
        store_jobs.claim_job(session, job_id=job.id, worker_id="bench", lease_s=60)
        model = store_jobs.succeed_job(
            session,
            job_id=job.id,
            worker_id="bench",
            model_id=model_id,
            class_names=trainer.dataset.class_names,
            image_shape=[*shape[1:], shape[0]],
            step=2,
        )
        assert model is not None
    return model_id


async def load(
    client: httpx.AsyncClient, request: Request, n: int, concurrency: int
) -> dict[str, float]:
    """n requests from ``concurrency`` clients; every answer must be a 2xx."""
    latencies: list[float] = []
    counter = iter(range(n))

    async def one_client() -> None:
        for i in counter:
            start = time.perf_counter()
            response = await request(client, i)
            latencies.append(time.perf_counter() - start)
            if not response.is_success:
                raise RuntimeError(f"{response.status_code}: {response.text[:300]}")

    start = time.perf_counter()
    await asyncio.gather(*(one_client() for _ in range(concurrency)))
    wall = time.perf_counter() - start
    p50, p99 = np.percentile(latencies, [50, 99]) * 1000
    return {"n": n, "rps": n / wall, "p50": p50, "p99": p99}


def report(name: str, r: dict[str, float], target: str = "", met: bool | None = None) -> None:
    line = (
        f"{name}: {r['n']} req, {r['rps']:.0f} req/s, p50 {r['p50']:.1f} ms, p99 {r['p99']:.1f} ms"
    )
    if target:
        line = f"{line:<88}  target {target}: {'met' if met else 'NOT met'}"
    print(line, flush=True)


def wait_idle(celery: Celery, worker: subprocess.Popen[bytes], timeout: float = 180) -> None:
    """Until the worker answers a broadcast with no active task."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if worker.poll() is not None:
            raise RuntimeError(f"the worker exited with code {worker.returncode}")
        active = celery.control.inspect(timeout=1.0).active()
        if active and all(not tasks for tasks in active.values()):
            return
        time.sleep(0.2)
    raise RuntimeError("the worker did not become idle")


def ts(value: str) -> float:
    return datetime.fromisoformat(value).timestamp()


async def submit_to_running(
    client: httpx.AsyncClient, runs: int, celery: Celery, worker: subprocess.Popen[bytes]
) -> tuple[list[float], list[float]]:
    """(observed by 10 ms polling, started_at − created_at of the row) per run, in seconds."""
    spec = {**RING8, "training": {**RING8["training"], "steps": 20_000}}
    observed, recorded = [], []
    for _ in range(runs):
        start = time.perf_counter()
        job_id = (await client.post("/v1/jobs", json=spec)).raise_for_status().json()["id"]
        deadline, tick = start + 60, start
        while True:
            job = (await client.get(f"/v1/jobs/{job_id}")).raise_for_status().json()
            if job["status"] != "queued":
                break
            if time.perf_counter() > deadline:
                raise RuntimeError(f"{job_id} was not picked up within 60 s")
            tick += 0.01
            await asyncio.sleep(max(0.0, tick - time.perf_counter()))
        if job["status"] != "running":
            raise RuntimeError(f"{job_id} went {job['status']}: {job['error']}")
        observed.append(time.perf_counter() - start)
        recorded.append(ts(job["started_at"]) - ts(job["created_at"]))
        await client.post(f"/v1/jobs/{job_id}/cancel")
        for _ in range(1200):  # the worker stops at its next heartbeat (~1 s); 120 s at most
            if (await client.get(f"/v1/jobs/{job_id}")).json()["status"] in FINISHED:
                break
            await asyncio.sleep(0.1)
        else:
            raise RuntimeError(f"{job_id} did not stop after its cancel")
        await asyncio.to_thread(wait_idle, celery, worker)
    return observed, recorded


@dataclass
class Setup:
    url: str
    key: str
    model_id: str
    db_name: str
    data_dir: Path
    child_env: dict[str, str]
    worker: subprocess.Popen[bytes] | None = None


async def measure(args: argparse.Namespace, setup: Setup) -> None:
    headers = {"Authorization": f"Bearer {setup.key}"}
    limits = httpx.Limits(max_connections=max(args.concurrency, 4))
    async with httpx.AsyncClient(
        base_url=setup.url, headers=headers, limits=limits, timeout=60
    ) as c:
        job_id = (await c.post("/v1/jobs", json=RING8)).raise_for_status().json()["id"]
        await load(c, lambda cl, i: cl.get(f"/v1/jobs/{job_id}"), 50, args.concurrency)  # warm-up
        r = await load(c, lambda cl, i: cl.get(f"/v1/jobs/{job_id}"), args.polls, args.concurrency)
        met = r["rps"] >= 1000 and r["p99"] <= 50
        report(f"job status polls (c={args.concurrency})", r, "≥1000 req/s, p99 ≤50 ms", met)

        r = await load(
            c, lambda cl, i: cl.post("/v1/jobs", json=RING8), args.submits, args.concurrency
        )
        report(f"job submission (c={args.concurrency}, enqueues to Redis)", r)

        for fmt in ("png_grid", "npy"):

            def gen(cl: httpx.AsyncClient, i: int, fmt: str = fmt) -> Awaitable[httpx.Response]:
                body = {"n": 64, "seed": i, "format": fmt}
                return cl.post(f"/v1/models/{setup.model_id}/samples", json=body)

            await load(c, gen, 3 * args.workers, 1)  # warm-up: each process loads the model
            r = await load(c, gen, args.generations, 1)
            report(f"64 samples 32x32 {fmt} (sequential)", r, "p50 ≤50 ms", r["p50"] <= 50)
            report(f"64 samples 32x32 {fmt} (c=4)", await load(c, gen, args.generations, 4))

        # Submit → running: the queued jobs above must not reach the worker.
        redis.Redis.from_url(BROKER_URL).flushdb()
        with psycopg.connect(**PG, dbname=setup.db_name, autocommit=True) as db:
            db.execute(
                "UPDATE jobs SET status = 'cancelled', finished_at = now() WHERE status = 'queued'"
            )
        from api.cli import worker_command

        with open(setup.data_dir / "worker.log", "wb") as log:
            setup.worker = worker = subprocess.Popen(
                worker_command(),
                cwd=setup.data_dir,
                env=setup.child_env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        celery = Celery("bench", broker=BROKER_URL)
        await asyncio.to_thread(wait_idle, celery, worker)
        observed, recorded = await submit_to_running(c, args.latency_runs, celery, worker)
        p50, top = np.percentile(observed, 50), max(observed)
        line = f"submit → running, observed (10 ms polls): {len(observed)} runs, p50 "
        line += f"{p50 * 1000:.0f} ms, max {top * 1000:.0f} ms"
        print(f"{line:<88}  target ≤1 s: {'met' if top <= 1 else 'NOT met'}")
        p50, top = np.percentile(recorded, 50), max(recorded)
        print(
            f"submit → running, row started_at − created_at: p50 {p50 * 1000:.0f} ms, "
            f"max {top * 1000:.0f} ms"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--polls", type=int, default=2000)
    parser.add_argument("--submits", type=int, default=300)
    parser.add_argument("--generations", type=int, default=100, help="per format and concurrency")
    parser.add_argument("--latency-runs", type=int, default=5)
    parser.add_argument("--concurrency", type=int, default=16, help="polls and submissions")
    parser.add_argument("--workers", type=int, default=1, help="uvicorn worker processes")
    args = parser.parse_args()

    from api.cli import api_command
    from store.auth import create_tenant_with_key
    from store.db import dispose_engines, get_sessionmaker, session_scope
    from store.migrate import upgrade

    db_name = f"ganforge_bench_{os.getpid()}"
    database_url = f"postgresql+psycopg://{PG['user']}@{PG['host']}:{PG['port']}/{db_name}"
    data_dir = Path(tempfile.mkdtemp(prefix="ganforge-bench-"))
    port = free_port()
    child_env = {
        **os.environ,
        "DATA_DIR": str(data_dir),
        "DATABASE_URL": database_url,
        "BROKER_URL": BROKER_URL,
        "STORAGE_URL": (data_dir / "objects").as_uri(),
        # Raised, not worked around: the cap's COUNT query still runs on every submission.
        "MAX_CONCURRENT_JOBS_PER_TENANT": "1000000",
    }
    setup = Setup("", "", "", db_name, data_dir, child_env)
    api: subprocess.Popen[bytes] | None = None
    redis_db = redis.Redis.from_url(BROKER_URL)
    print(
        f"machine: {os.cpu_count()} CPUs; API: {args.workers} uvicorn worker(s) on port {port}; "
        f"PostgreSQL {db_name}; broker {BROKER_URL}; client: httpx in this process"
    )
    try:
        redis_db.flushdb()
        pg_admin(f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)')
        pg_admin(f'CREATE DATABASE "{db_name}"')
        upgrade(database_url)
        with session_scope(get_sessionmaker(database_url)) as session:
            tenant, _, key = create_tenant_with_key(session, name="bench")
            tenant_id = tenant.id
        model_id = publish_dcgan(database_url, child_env["STORAGE_URL"], tenant_id)
        dispose_engines()

        command = [*api_command("127.0.0.1", port), "--workers", str(args.workers)]
        with open(data_dir / "api.log", "wb") as log:
            api = subprocess.Popen(
                command, cwd=data_dir, env=child_env, stdout=log, stderr=subprocess.STDOUT
            )
        url, deadline = f"http://127.0.0.1:{port}", time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if api.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the API did not start:\n{(data_dir / 'api.log').read_text()}")
            time.sleep(0.2)
        setup.url, setup.key, setup.model_id = url, key, model_id
        asyncio.run(measure(args, setup))
    finally:
        stop(setup.worker, 60)
        stop(api, 15)
        redis_db.flushdb()
        dispose_engines()
        pg_admin(f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)')
        shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
