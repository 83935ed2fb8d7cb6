"""How long the fair claim's choice (``store.jobs.fairest_job``) takes with many jobs waiting in one
queue, on a fresh database of the local PostgreSQL: ``--waiting`` queued jobs spread over
``--tenants`` tenants, ``--running`` of them running, then the median of ``--repeats`` choices and
of as many claims (``claim_next``, each committed).

    python -m benchmarks.fair_claim --waiting 10000 --tenants 100
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

from sqlalchemy import text

from benchmarks.local_services import PG, pg_admin
from gan_engine.spec import parse_spec
from store.auth import create_tenant
from store.db import dispose_engines, get_sessionmaker, session_scope
from store.jobs import claim_next, create_job, fairest_job
from store.migrate import upgrade
from store.models import Job
from store.queue import CPU_QUEUE

SPEC = {"dataset": {"builtin": "ring8"}, "model": {"architecture": "mlp"},
        "training": {"steps": 100, "device": "cpu"}}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--waiting", type=int, default=10_000)
    parser.add_argument("--tenants", type=int, default=100)
    parser.add_argument("--running", type=int, default=1_000)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    db_name = f"ganforge_fairclaim_{os.getpid()}"
    pg_admin(f'CREATE DATABASE "{db_name}"')
    url = f"postgresql+psycopg://{PG['user']}@{PG['host']}:{PG['port']}/{db_name}"
    try:
        upgrade(url)
        sessions = get_sessionmaker(url)
        with session_scope(sessions) as session:
            tenants = [create_tenant(session, name=f"t{i}").id for i in range(args.tenants)]
            template, _ = create_job(session, tenant_id=tenants[0], spec=parse_spec(SPEC))
        generated = ("id", "tenant_id", "created_at", "status", "started_at")
        columns = [c.name for c in Job.__table__.columns if c.name not in generated]
        listed = ", ".join(columns)
        total = args.waiting + args.running
        with session_scope(sessions) as session:
            session.execute(text("CREATE TEMP TABLE t AS SELECT id, row_number() OVER () - 1 AS n "
                                 "FROM tenants"))  # fmt: skip
            session.execute(
                text(
                    f"INSERT INTO jobs (id, tenant_id, created_at, status, started_at, {listed}) "
                    f"SELECT 'job_b' || g, (SELECT id FROM t WHERE n = g % :tenants), "
                    f"now() - (g || ' seconds')::interval, "
                    f"CASE WHEN g < :running THEN 'running' ELSE 'queued' END, "
                    f"CASE WHEN g < :running THEN now() - (g || ' seconds')::interval END, "
                    f"{listed} FROM jobs, generate_series(1, :total) AS g WHERE jobs.id = :template"
                ),
                {"tenants": args.tenants, "running": args.running, "total": total,
                 "template": template.id},
            )  # fmt: skip
            session.execute(text("ANALYZE jobs"))
        choices, claims = [], []
        for i in range(args.repeats):
            with session_scope(sessions) as session:
                started = time.perf_counter()
                fairest_job(session, queue=CPU_QUEUE)
                choices.append(time.perf_counter() - started)
            with session_scope(sessions) as session:
                started = time.perf_counter()
                assert claim_next(session, queue=CPU_QUEUE, worker_id=f"w{i}", lease_s=60)
            claims.append(time.perf_counter() - started)
    finally:
        dispose_engines()
        pg_admin(f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)')
    print(f"{args.waiting} queued and {args.running} running jobs of {args.tenants} tenants in "
          f"one queue: fairest_job median {statistics.median(choices) * 1e3:.1f} ms, claim_next "
          f"median {statistics.median(claims) * 1e3:.1f} ms ({args.repeats} each)")  # fmt: skip


if __name__ == "__main__":
    main()
