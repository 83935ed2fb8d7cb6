"""Private servers for the fault tests, which restart or stop them: a PostgreSQL cluster
(``initdb`` into a temporary folder), a Redis server with no persistence, moto's S3 server. The
shared services on the standard ports are never touched. Every wait is a bounded poll."""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
import redis

from store.db import dispose_engines
from store.migrate import upgrade
from store.settings import Settings
from tests.fixtures.processes import WorkerProcess, poll
from tests.fixtures.services import MotoServer, free_port, fresh_pg_database

__all__ = ["WorkerProcess", "poll"]

PG_BIN = sorted(Path("/usr/lib/postgresql").glob("*/bin"))
REPO_ROOT = Path(__file__).resolve().parents[2]


class PrivatePostgres:
    """A PostgreSQL cluster of this test run on a free port (user postgres, trust auth). As root,
    the server runs as the ``postgres`` user, which owns the temporary folder."""

    def __init__(self) -> None:
        if not PG_BIN:
            pytest.fail("no PostgreSQL binaries under /usr/lib/postgresql/*/bin", pytrace=False)
        self.bin = PG_BIN[-1]
        self.folder = Path(tempfile.mkdtemp(prefix="ganforge-faults-pg-"))
        self.data = self.folder / "data"
        self.port = free_port()
        self.log = self.folder / "postgres.log"
        self.as_user: list[str] = []
        if os.geteuid() == 0:
            postgres = pwd.getpwnam("postgres")
            os.chown(self.folder, postgres.pw_uid, postgres.pw_gid)
            self.as_user = ["runuser", "-u", "postgres", "--"]
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8")
        self.url = f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/ganforge"

    def _run(self, tool: str, *args: str, timeout: float = 60) -> None:
        command = [*self.as_user, str(self.bin / tool), *args]
        done = subprocess.run(command, capture_output=True, timeout=timeout, check=False)
        if done.returncode != 0:
            log = self.log.read_text() if self.log.exists() else ""
            pytest.fail(
                f"{tool} failed ({done.returncode}): {done.stderr.decode()}\n{log}", pytrace=False
            )

    def start(self) -> None:
        options = (
            f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 -c fsync=off "
            "-c max_connections=100 -c shared_buffers=32MB"
        )
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", options, "-w",
                  "-t", "60", "start")  # fmt: skip

    def stop(self) -> None:
        """A fast shutdown: open connections are terminated, as in a restart or failover."""
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "-t", "60", "stop")

    def admin(self, sql: str) -> None:
        with psycopg.connect(
            host="127.0.0.1", port=self.port, user="postgres", dbname="postgres",
            autocommit=True, connect_timeout=5,
        ) as connection:  # fmt: skip
            connection.execute(sql)  # type: ignore[arg-type]

    def remove(self) -> None:
        if (self.data / "postmaster.pid").exists():
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.folder, ignore_errors=True)


@pytest.fixture(scope="session")
def private_pg() -> Iterator[PrivatePostgres]:
    """A running private cluster with database ``ganforge`` migrated to head."""
    server = PrivatePostgres()
    try:
        server.start()
        server.admin("CREATE DATABASE ganforge")
        upgrade(server.url)
        yield server
    finally:
        dispose_engines()
        server.remove()


class PrivateRedis:
    """``redis-server`` on a free port, keeping nothing on disk: a restart loses every message."""

    def __init__(self, log: Path) -> None:
        self.port, self.log = free_port(), log
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with open(self.log, "ab") as out:
            self.process = subprocess.Popen(
                ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                 "--appendonly", "no"],
                stdout=out, stderr=subprocess.STDOUT,
            )  # fmt: skip
        client = redis.Redis(port=self.port, socket_connect_timeout=1)

        def answers() -> bool:
            assert self.process is not None
            if self.process.poll() is not None:
                pytest.fail(f"redis-server exited:\n{self.log.read_text()}", pytrace=False)
            try:
                return bool(client.ping())
            except redis.ConnectionError:
                return False

        try:
            poll(answers, timeout=30, what="redis-server to answer")
        finally:
            client.close()

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, socket_connect_timeout=5)


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    server = PrivateRedis(tmp_path / "redis.log")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def private_s3(tmp_path: Path) -> Iterator[MotoServer]:
    server = MotoServer(tmp_path / "moto.log")
    server.start()
    try:
        yield server
    finally:
        server.stop()


def worker_env(**values: str) -> dict[str, str]:
    """The environment of a worker process: this one's, minus any ganforge URL, plus ``values``."""
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "BROKER_URL",
                                                               "STORAGE_URL")}  # fmt: skip
    return {**env, "PYTHONPATH": str(REPO_ROOT), "OMP_NUM_THREADS": "1", **values}


@pytest.fixture
def pg_database(request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh, migrated database on the shared PostgreSQL, named after the test module."""
    with fresh_pg_database(request.module.__name__.rsplit(".", 1)[-1]) as url:
        upgrade(url)
        yield url


@dataclass(frozen=True)
class Backends:
    """One database, broker, object store and data folder, as the test's own service sees them
    (``settings``) and as its worker processes do (``env``)."""

    settings: Settings
    env: dict[str, str]


def shared_backends(
    tmp_path: Path,
    database_url: str,
    broker_url: str,
    data_dir: Path,
    *,
    settings: dict[str, Any] | None = None,
    **env: str,
) -> Backends:
    """``settings``: more fields of the service's Settings; ``env``: more worker variables."""
    storage_url = (tmp_path / "objects").as_uri()
    return Backends(
        Settings(
            data_dir=tmp_path,
            database_url=database_url,
            broker_url=broker_url,
            storage_url=storage_url,
            ganforge_data_dir=data_dir,
            **(settings or {}),
            _env_file=None,  # type: ignore[call-arg]
        ),
        worker_env(
            DATA_DIR=str(tmp_path),
            DATABASE_URL=database_url,
            BROKER_URL=broker_url,
            STORAGE_URL=storage_url,
            GANFORGE_DATA_DIR=str(data_dir),
            **env,
        ),
    )
