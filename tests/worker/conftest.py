"""Fixtures of the worker tests: the embedded configuration (SQLite + a local storage folder)
for ``run_job`` in-process, and the real services (PostgreSQL, Redis, moto S3) end to end."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from gan_engine.spec import Spec, parse_spec
from store.auth import create_tenant_with_key
from store.db import dispose_engines, get_sessionmaker, session_scope
from store.jobs import create_job
from store.migrate import upgrade
from store.models import Job
from store.settings import Settings
from store.storage import ObjectStorage, storage_from_url
from tests.fixtures.processes import poll
from tests.fixtures.services import pg_sessionmaker, pg_url, s3_endpoint  # noqa: F401

__all__ = ["poll"]


def tiny_spec(steps: int = 30, **sections: dict[str, Any]) -> Spec:
    """A conditional GAN on the 8-Gaussian ring, small enough for a few ms a step on a CPU."""
    spec: dict[str, Any] = {
        "dataset": {"builtin": "ring8"},
        "model": {"architecture": "mlp", "conditioning": "concat", "width": 32, "latent_dim": 4,
                  "mlp_layers": 2},
        "training": {"steps": steps, "batch_size": 16, "ema_decay": 0.9, "seed": 7,
                     "device": "cpu"},
        "monitor": {"log_every": 5, "sample_every": 10, "eval_every": 100_000,
                    "checkpoint_every": 10, "samples_per_class": 2, "eval_samples": 100,
                    "metrics": []},
    }  # fmt: skip
    for name, values in sections.items():
        spec[name] = {**spec.get(name, {}), **values}
    return parse_spec(spec)


@dataclass
class Service:
    """What a test needs to submit jobs and read what the worker wrote."""

    settings: Settings
    sessions: sessionmaker[Session]
    storage: ObjectStorage
    tenant_id: str

    def submit(self, spec: Spec) -> str:
        with session_scope(self.sessions) as session:
            job, _ = create_job(session, tenant_id=self.tenant_id, spec=spec)
            return job.id

    def job(self, job_id: str) -> Job:
        with session_scope(self.sessions) as session:
            job = session.scalar(
                select(Job).where(Job.id == job_id).execution_options(populate_existing=True)
            )
            assert job is not None
            return job

    def rows(self, model: type, job_id: str, *order: Any) -> list[Any]:
        with session_scope(self.sessions) as session:
            query = select(model).where(model.job_id == job_id)  # type: ignore[attr-defined]
            return list(session.scalars(query.order_by(*order)))


def new_tenant(sessions: sessionmaker[Session], name: str = "acme") -> str:
    with session_scope(sessions) as session:
        tenant, _, _ = create_tenant_with_key(session, name=name)
        return tenant.id


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("worker-sqlite") / "template.db"
    upgrade(f"sqlite:///{path}")
    return path


@pytest.fixture
def embedded(sqlite_template: Path, tmp_path: Path, data_dir: Path) -> Iterator[Service]:
    """The embedded configuration: a SQLite file and a storage folder under a temp DATA_DIR."""
    shutil.copyfile(sqlite_template, tmp_path / "ganforge.db")
    settings = Settings(
        data_dir=tmp_path,
        database_url="",  # "": the embedded defaults under data_dir, whatever the environment
        broker_url="",
        storage_url="",
        ganforge_data_dir=data_dir,
        lease_s=30,
        heartbeat_s=0.5,
        _env_file=None,  # type: ignore[call-arg]
    )
    settings.ensure_dirs()
    sessions = get_sessionmaker(settings.database_url)
    service = Service(settings, sessions, storage_from_url(settings=settings), new_tenant(sessions))
    yield service
    dispose_engines()
