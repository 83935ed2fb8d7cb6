"""What one training job costs the shared services: database commits and rows a job-second, and
object-storage bytes a step, counted on a real job run by the worker (``worker.runner.run_job``,
in this process) against a fresh database on the local PostgreSQL and a storage folder.

Counted twice: on the client (SQLAlchemy engine events: commits, INSERT/UPDATE/DELETE statements)
and on the server (``pg_stat_database``: xact_commit, tuples inserted and updated). The inputs of
the scaling envelope in docs/scaling.md.

    python -m benchmarks.job_footprint                    # ring8 MLP, the default monitor cadence
    python -m benchmarks.job_footprint --spec fashion     # a DCGAN on Fashion-MNIST, 28x28
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import psycopg
from sqlalchemy import Engine, event

from benchmarks.local_services import PG, pg_admin
from gan_engine.spec import parse_spec
from store.auth import create_tenant
from store.db import dispose_engines, get_sessionmaker, session_scope
from store.jobs import create_job
from store.migrate import upgrade
from store.settings import Settings
from worker.runner import run_job

MONITOR = {"log_every": 10, "sample_every": 500, "checkpoint_every": 1000, "eval_every": 10**9,
           "metrics": []}  # fmt: skip  # the spec defaults, evaluation off (CPU time only)
SPECS: dict[str, dict[str, Any]] = {
    "ring8": {
        "dataset": {"builtin": "ring8"},
        "model": {"architecture": "mlp", "width": 64, "latent_dim": 8},
        "training": {"steps": 3000, "batch_size": 64, "seed": 1, "device": "cpu"},
        "monitor": MONITOR,
    },
    "fashion": {
        "dataset": {"builtin": "fashion-mnist"},
        "model": {"architecture": "dcgan", "width": 32, "latent_dim": 64},
        "training": {"steps": 300, "batch_size": 32, "seed": 1, "device": "cpu"},
        "monitor": {**MONITOR, "log_every": 10, "sample_every": 100, "checkpoint_every": 100},
    },
}


class ClientCounts:
    """Commits and writing statements of every engine in this process."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        event.listen(Engine, "commit", self._commit)
        event.listen(Engine, "before_cursor_execute", self._statement)

    def _commit(self, *_: Any) -> None:
        self.counts["commits"] += 1

    def _statement(self, _c: Any, _cur: Any, statement: str, *_: Any) -> None:
        verb = statement.lstrip().split(" ", 1)[0].upper()
        if verb in ("INSERT", "UPDATE", "DELETE"):
            self.counts[verb.lower()] += 1


def server_counts(db_name: str) -> dict[str, int]:
    with psycopg.connect(**PG, dbname=db_name, autocommit=True) as db:  # type: ignore[arg-type]
        db.execute("SELECT pg_stat_force_next_flush()")
        row = db.execute(
            "SELECT xact_commit, tup_inserted, tup_updated FROM pg_stat_database "
            "WHERE datname = %s",
            (db_name,),
        ).fetchone()
    assert row is not None
    return {"xact_commit": row[0], "tup_inserted": row[1], "tup_updated": row[2]}


def storage_bytes(root: Path) -> dict[str, int]:
    """Bytes under each top-level prefix of the storage folder (jobs/…/samples etc. by kind)."""
    sizes: Counter[str] = Counter()
    for path in root.rglob("*"):
        if path.is_file():
            kind = next((k for k in ("checkpoints", "samples") if k in path.parts), path.parts[
                len(root.parts)
            ])  # fmt: skip
            sizes[kind] += path.stat().st_size
    return dict(sizes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", choices=sorted(SPECS), default="ring8")
    parser.add_argument("--steps", type=int, default=None, help="override training.steps")
    args = parser.parse_args()
    spec_data = json.loads(json.dumps(SPECS[args.spec]))
    if args.steps:
        spec_data["training"]["steps"] = args.steps
    steps = spec_data["training"]["steps"]
    db_name = f"ganforge_footprint_{os.getpid()}"
    pg_admin(f'CREATE DATABASE "{db_name}"')
    url = f"postgresql+psycopg://{PG['user']}@{PG['host']}:{PG['port']}/{db_name}"
    try:
        upgrade(url)
        with tempfile.TemporaryDirectory(prefix="ganforge-footprint-") as folder:
            objects = Path(folder) / "objects"
            settings = Settings(
                data_dir=Path(folder),
                database_url=url,
                broker_url="memory://",
                storage_url=objects.as_uri(),
                ganforge_data_dir=os.environ.get("GANFORGE_DATA_DIR"),
                keep_checkpoints=10**6,  # keep every checkpoint: count what was written
                _env_file=None,  # type: ignore[call-arg]
            )
            sessions = get_sessionmaker(url)
            with session_scope(sessions) as session:
                tenant = create_tenant(session, name="footprint").id
                job, _ = create_job(session, tenant_id=tenant, spec=parse_spec(spec_data))
            client = ClientCounts()
            before = server_counts(db_name)
            started = time.perf_counter()
            outcome = run_job(job.id, settings=settings)
            seconds = time.perf_counter() - started
            dispose_engines()
            after = server_counts(db_name)
            assert outcome.status == "succeeded", outcome
            server = {name: after[name] - before[name] for name in after}
            blobs = storage_bytes(objects)
    finally:
        dispose_engines()
        pg_admin(f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)')
    monitor = spec_data["monitor"]
    print(f"spec {args.spec}: {steps} steps in {seconds:.1f} s ({steps / seconds:.0f} steps/s), "
          f"log_every {monitor['log_every']}, sample_every {monitor['sample_every']}, "
          f"checkpoint_every {monitor['checkpoint_every']}")  # fmt: skip
    counts = client.counts
    print(f"client: {counts['commits']} commits, {counts['insert']} INSERT, {counts['update']} "
          f"UPDATE, {counts['delete']} DELETE statements")  # fmt: skip
    print(f"server: {server['xact_commit']} commits, {server['tup_inserted']} rows inserted, "
          f"{server['tup_updated']} rows updated")  # fmt: skip
    print(
        f"per job-second: {server['xact_commit'] / seconds:.1f} commits, "
        f"{(server['tup_inserted'] + server['tup_updated']) / seconds:.1f} row writes"
    )
    print(
        f"per logged step (every {monitor['log_every']}): "
        f"{server['xact_commit'] / (steps / monitor['log_every']):.2f} commits"
    )
    total = sum(blobs.values())
    checkpoints = max(1, steps // monitor["checkpoint_every"])
    samples = max(1, steps // monitor["sample_every"])
    print(f"storage: {json.dumps(blobs)}; {total / steps:.0f} bytes a step; "
          f"{blobs.get('checkpoints', 0) / checkpoints:.0f} bytes a checkpoint, "
          f"{blobs.get('samples', 0) / samples:.0f} bytes a sample grid")  # fmt: skip


if __name__ == "__main__":
    main()
