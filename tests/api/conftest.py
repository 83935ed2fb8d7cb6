"""Fixtures of the API tests: the app over HTTP (TestClient) on the session's PostgreSQL database,
a local folder as object storage and kombu's ``filesystem://`` broker folder, all under
``tmp_path``, so enqueueing works with no worker and leaves a message file to look at."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from api.config import ApiSettings
from api.main import create_app
from gan_engine.artifacts import CONFIG_FILE, DISCRIMINATOR_FILE
from gan_engine.data import load_dataset
from gan_engine.run import export_files
from gan_engine.spec import Spec, parse_spec
from gan_engine.trainer import Trainer
from store import jobs as store_jobs
from store.auth import create_tenant_with_key
from store.db import get_sessionmaker, session_scope
from store.migrate import upgrade
from store.models import new_id
from store.storage import ObjectStorage, model_prefix
from tests.fixtures.services import fresh_pg_database


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """A migrated PostgreSQL database of these tests' own (tests/store has another), so the two
    packages never share or drop each other's database in one run."""
    with fresh_pg_database("api") as url:
        upgrade(url)
        yield url


@pytest.fixture(scope="session")
def sessions(pg_url: str) -> sessionmaker[Session]:
    """The factory the apps use too (``store.db.get_sessionmaker`` is per URL)."""
    return get_sessionmaker(pg_url)


def make_settings(tmp_path: Path, pg_url: str, **overrides: Any) -> ApiSettings:
    values: dict[str, Any] = {
        "data_dir": tmp_path / "data",
        "database_url": pg_url,
        "storage_url": (tmp_path / "objects").as_uri(),
        "broker_url": "filesystem://",
        "reaper_enabled": False,
        "stream_poll_s": 0.05,
    }
    return ApiSettings(**(values | overrides))


@pytest.fixture
def settings(tmp_path: Path, pg_url: str) -> ApiSettings:
    return make_settings(tmp_path, pg_url)


@pytest.fixture
def app(settings: ApiSettings) -> FastAPI:
    return create_app(settings)


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app) as test_client:
        yield test_client


@pytest.fixture
def storage(app: FastAPI) -> ObjectStorage:
    store: ObjectStorage = app.state.storage
    return store


@dataclass(frozen=True)
class Account:
    tenant_id: str
    key_id: str
    key: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}


@pytest.fixture
def new_account(sessions: sessionmaker[Session]) -> Callable[[], Account]:
    def make(name: str = "tenant") -> Account:
        with session_scope(sessions) as session:
            tenant, api_key, plaintext = create_tenant_with_key(session, name=name)
            return Account(tenant.id, api_key.id, plaintext)

    return make


@pytest.fixture
def account(new_account: Callable[[], Account]) -> Account:
    return new_account()


@pytest.fixture
def other(new_account: Callable[[], Account]) -> Account:
    return new_account()


def queued_messages(settings: ApiSettings) -> list[Path]:
    """Messages waiting in the filesystem broker's folder."""
    folder = Path(settings.broker_transport_options()["data_folder_in"])
    return sorted(p for p in folder.iterdir() if p.is_file()) if folder.is_dir() else []


def assert_error(
    response: Any, status: int, code: str | None = None, param: str | None = None
) -> dict[str, Any]:
    """The response is an error envelope with this status (and code, and param)."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) >= {"error"} and set(body["error"]) == {"code", "message", "param"}, body
    if code is not None:
        assert body["error"]["code"] == code, body
    if param is not None:
        assert body["error"]["param"] == param, body
    error: dict[str, Any] = body["error"]
    return error


# --- trained generators, published as a worker would -----------------------------------------

TINY_MONITOR = {
    "log_every": 1,
    "sample_every": 1000,
    "eval_every": 1000,
    "checkpoint_every": 1000,
    "metrics": [],
}
DIGITS = {
    "dataset": {"builtin": "digits"},
    "model": {"image_size": 8, "width": 8, "latent_dim": 16, "conditioning": "concat"},
    "training": {"steps": 4, "batch_size": 16, "seed": 7, "device": "cpu"},
    "monitor": TINY_MONITOR,
}
DIGITS_CBN = {  # G conditioned through class-conditional BatchNorm, D by projection
    **DIGITS,
    "model": {**DIGITS["model"], "conditioning": "projection", "g_conditioning": "cbn"},
}
RING = {
    "dataset": {"builtin": "ring8"},
    "model": {"architecture": "mlp", "width": 16, "latent_dim": 4, "mlp_layers": 2},
    "training": {"steps": 4, "batch_size": 16, "seed": 7, "device": "cpu"},
    "monitor": TINY_MONITOR,
}


def train(data: dict[str, Any]) -> tuple[Spec, dict[str, bytes]]:
    spec = parse_spec(data)
    trainer = Trainer(spec, load_dataset(spec.dataset))
    return spec, export_files(trainer, trainer.fit())


@pytest.fixture(scope="session")
def artifacts() -> dict[str, tuple[Spec, dict[str, bytes]]]:
    """Class-conditional 8×8 digits generators (G by concat, G by cBN) and an unconditional ring8
    one, 4 steps each."""
    return {"digits": train(DIGITS), "digits-cbn": train(DIGITS_CBN), "ring8": train(RING)}


Publish = Callable[..., str]


def without_discriminator(files: dict[str, bytes]) -> dict[str, bytes]:
    """An artifact as written before models kept their discriminator."""
    config = json.loads(files[CONFIG_FILE])
    del config["discriminator"]
    kept = {name: data for name, data in files.items() if name != DISCRIMINATOR_FILE}
    return kept | {CONFIG_FILE: json.dumps(config).encode()}


@pytest.fixture
def publish(
    artifacts: dict[str, tuple[Spec, dict[str, bytes]]],
    sessions: sessionmaker[Session],
    storage: ObjectStorage,
) -> Publish:
    """What a worker does when a job succeeds: upload the generator, then register the model."""

    def make(account: Account, which: str = "digits", *, discriminator: bool = True) -> str:
        """``discriminator`` False: a model trained before artifacts kept the discriminator."""
        spec, files = artifacts[which]
        if not discriminator:
            files = without_discriminator(files)
        config = json.loads(files[CONFIG_FILE])
        shape = config["sample_shape"]  # (C, H, W) or (2,); models list [H, W, C] as datasets do
        image_shape = [*shape[1:], shape[0]] if len(shape) == 3 else shape
        model_id = new_id("mdl")
        for name, data in files.items():  # every file of the artifact, as the worker uploads
            storage.put_bytes(model_prefix(model_id) + name, data)
        with session_scope(sessions) as session:
            job, _ = store_jobs.create_job(session, tenant_id=account.tenant_id, spec=spec)
            store_jobs.claim_job(session, job_id=job.id, worker_id="w", lease_s=60)
            model = store_jobs.succeed_job(
                session,
                job_id=job.id,
                worker_id="w",
                model_id=model_id,
                class_names=config["class_names"],
                image_shape=image_shape,
                summary={"fid": 3.5},
                step=4,
            )
            assert model is not None
        return model_id

    return make
