"""``ganforge``: migrate and keys in-process on a temp SQLite file; ``ganforge up`` as a real
subprocess (API + worker) that trains a job through the embedded file-based queue."""

from __future__ import annotations

import re
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from ganforge.cli import app
from ganforge.cli.server import KEY_FILE
from store.auth import verify_api_key
from store.db import dispose_engines, get_sessionmaker, session_scope
from store.migrate import current_revision, head_revision
from store.models import Tenant
from store.settings import get_settings
from tests.fixtures.embedded import KEY_PATTERN, SERVICE_ENV, Up, embedded_env, ganforge_command
from tests.fixtures.services import free_port


@pytest.fixture
def up_env(data_dir: Path) -> dict[str, str]:
    return embedded_env(data_dir)


@pytest.fixture
def embedded_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """This process's settings pointed at an empty DATA_DIR (SQLite, storage folder)."""
    for name in SERVICE_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DATA_DIR", str(tmp_path))
    monkeypatch.chdir(tmp_path)  # no stray .env
    get_settings.cache_clear()
    yield tmp_path
    get_settings.cache_clear()
    dispose_engines()


def test_migrate_then_keys_create(embedded_settings: Path) -> None:
    runner = CliRunner()
    url = f"sqlite:///{embedded_settings / 'ganforge.db'}"

    migrated = runner.invoke(app, ["migrate"])
    assert migrated.exit_code == 0, migrated.output
    assert current_revision(url) == head_revision()

    keys = []
    for _ in range(2):
        created = runner.invoke(app, ["keys", "create", "--tenant", "acme", "--name", "ci"])
        assert created.exit_code == 0, created.output
        keys.append(created.stdout.strip().splitlines()[-1])

    assert keys[0] != keys[1] and all(key.startswith("gf_") for key in keys)
    with session_scope(get_sessionmaker(url)) as session:
        found = [verify_api_key(session, key=key) for key in keys]
        assert all(row is not None for row in found)
        assert found[0].tenant_id == found[1].tenant_id  # type: ignore[union-attr]
        assert session.scalar(select(func.count()).where(Tenant.name == "acme")) == 1


def test_keys_create_asks_for_migrations_first(embedded_settings: Path) -> None:
    result = CliRunner().invoke(app, ["keys", "create", "--tenant", "acme"])

    assert result.exit_code == 1
    assert "ganforge migrate" in result.output


# --- ganforge up ---------------------------------------------------------------------------------


def test_up_serves_the_api_trains_a_job_and_stops_cleanly(
    tmp_path: Path, up_env: dict[str, str]
) -> None:
    data_dir, log = tmp_path / "data", tmp_path / "up.log"
    service = Up(data_dir, free_port(), up_env, log)
    try:
        service.wait_until(service.healthy, "/healthz", timeout=120)
        ready = httpx.get(f"{service.url}/readyz", timeout=10)
        assert ready.status_code == 200, ready.text
        assert ready.json()["checks"] == {"database": "ok", "broker": "ok", "storage": "ok"}
        key = service.key()
        assert (data_dir / KEY_FILE).read_text().strip() == key
        assert (data_dir / KEY_FILE).stat().st_mode & 0o777 == 0o600

        client = httpx.Client(
            base_url=service.url, headers={"Authorization": f"Bearer {key}"}, timeout=30
        )
        spec = {
            "dataset": {"builtin": "ring8"},
            "model": {"architecture": "mlp", "conditioning": "concat", "width": 32,
                      "latent_dim": 4, "mlp_layers": 2},
            "training": {"steps": 20, "batch_size": 16, "device": "cpu"},
            "monitor": {"log_every": 5, "sample_every": 10, "checkpoint_every": 10,
                        "eval_samples": 100},
        }  # fmt: skip
        submitted = client.post("/v1/jobs", json=spec)
        assert submitted.status_code == 202, submitted.text
        job_id = submitted.json()["id"]

        def finished() -> bool:
            return client.get(f"/v1/jobs/{job_id}").json()["status"] in ("succeeded", "failed")

        service.wait_until(finished, f"job {job_id} to finish", timeout=120)
        job = client.get(f"/v1/jobs/{job_id}").json()
        assert job["status"] == "succeeded", job
        grid = client.post(
            f"/v1/models/{job['model_id']}/samples",
            json={"class_names": ["mode3"], "n": 8, "seed": 3, "format": "png_grid"},
        )
        assert grid.status_code == 200 and grid.content.startswith(b"\x89PNG")
    finally:
        code = service.stop()
    assert code == 0, service.output()[-4000:]
    assert "stopped." in service.output()
    assert (data_dir / "broker" / "control").is_dir()  # kombu's exchange table, kept under DATA_DIR

    again = Up(data_dir, free_port(), up_env, log)
    try:
        again.wait_until(again.healthy, "/healthz after a restart", timeout=120)
        again.wait_until(lambda: len(KEY_PATTERN.findall(again.output())) == 2, "the key", 30)
        assert KEY_PATTERN.findall(again.output()) == [key, key]  # the same key, printed again
    finally:
        assert again.stop() == 0, again.output()[-4000:]


def test_api_workers_runs_that_many_processes(tmp_path: Path, up_env: dict[str, str]) -> None:
    """``ganforge api --workers 2``: two API processes answer on one port."""
    env = up_env | {"DATA_DIR": str(tmp_path), "REAPER_ENABLED": "false"}
    subprocess.run([*ganforge_command(), "migrate"], cwd=tmp_path, env=env, check=True, timeout=120)
    port = free_port()
    log = tmp_path / "api.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [*ganforge_command(), "api", "--port", str(port), "--workers", "2"],
            cwd=tmp_path, env=env, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        pids: set[int] = set()
        while len(pids) < 2:
            assert process.poll() is None, log.read_text()
            assert time.monotonic() < deadline, f"two workers never came up:\n{log.read_text()}"
            pids = {
                int(p) for p in re.findall(r"Started server process \[(\d+)\]", log.read_text())
            }
            time.sleep(0.1)  # polling interval
        assert len(pids) == 2 and process.pid not in pids
        healthy = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=10)
        assert healthy.status_code == 200
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
