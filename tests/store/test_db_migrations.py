from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect
from sqlalchemy.orm import Session, sessionmaker

from store.db import (
    get_engine,
    get_sessionmaker,
    is_sqlite,
    make_engine,
    normalize_url,
    session_scope,
)
from store.migrate import current_revision, downgrade, head_revision, upgrade
from store.models import Base, Tenant
from tests.fixtures.services import fresh_pg_database

REPO = Path(__file__).resolve().parents[2]
TABLES = {
    "tenants",
    "api_keys",
    "datasets",
    "jobs",
    "job_events",
    "webhook_deliveries",
    "metrics",
    "samples",
    "checkpoints",
    "models",
}


def test_normalize_url() -> None:
    assert normalize_url("postgresql://u:p@h/db") == "postgresql+psycopg://u:p@h/db"
    assert normalize_url("postgres://u@h:5433/db") == "postgresql+psycopg://u@h:5433/db"
    assert normalize_url("postgresql+psycopg://u@h/db") == "postgresql+psycopg://u@h/db"
    assert normalize_url("sqlite:///x.db") == "sqlite:///x.db"
    assert is_sqlite("sqlite://") and not is_sqlite("postgresql://h/db")


def test_sqlite_engine_pragmas(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path}/sub/dir/x.db")  # parent folders are created
    with engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    engine.dispose()


def _tables(url: str) -> set[str]:
    engine = make_engine(url)
    try:
        return set(inspect(engine).get_table_names()) - {"alembic_version"}
    finally:
        engine.dispose()


def _no_schema_drift(url: str) -> list[object]:
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            return list(compare_metadata(context, Base.metadata))
    finally:
        engine.dispose()


def _round_trip(url: str) -> None:
    assert current_revision(url) is None
    upgrade(url)
    assert current_revision(url) == head_revision() == "0009"
    assert _tables(url) == TABLES
    assert _no_schema_drift(url) == []  # the hand-written migration matches the models
    downgrade(url, "base")
    assert current_revision(url) is None
    assert _tables(url) == set()
    upgrade(url)  # and once more: the downgrade left nothing behind
    assert _tables(url) == TABLES


def test_migrations_round_trip_on_sqlite(tmp_path: Path) -> None:
    _round_trip(f"sqlite:///{tmp_path}/m.db")


def test_migrations_round_trip_on_postgres() -> None:
    with fresh_pg_database("migrations") as url:
        _round_trip(url)


def test_alembic_cli_takes_the_url_from_x_argument(tmp_path: Path) -> None:
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{tmp_path}/env.db"}
    x_url = f"sqlite:///{tmp_path}/x.db"
    command = [sys.executable, "-m", "alembic", "-c", str(REPO / "alembic.ini")]
    subprocess.run([*command, "-x", f"url={x_url}", "upgrade", "head"], env=env, check=True)
    assert current_revision(x_url) == "0009"
    assert not (tmp_path / "env.db").exists()


def test_session_scope_commits_or_rolls_back(db: sessionmaker[Session]) -> None:
    with session_scope(db) as session:
        session.add(Tenant(id="ten_kept", name="kept"))
    with pytest.raises(RuntimeError), session_scope(db) as session:
        session.add(Tenant(id="ten_lost", name="lost"))
        session.flush()
        raise RuntimeError("boom")
    with session_scope(db) as session:
        assert session.get(Tenant, "ten_kept") is not None
        assert session.get(Tenant, "ten_lost") is None


def test_timestamps_are_utc_aware(db: sessionmaker[Session]) -> None:
    paris = timezone(timedelta(hours=1))
    with session_scope(db) as session:
        session.add(
            Tenant(id="ten_tz", name="tz", created_at=datetime(2024, 5, 1, 13, tzinfo=paris))
        )
    with session_scope(db) as session:
        loaded = session.get(Tenant, "ten_tz", populate_existing=True)
        assert loaded is not None
        assert loaded.created_at == datetime(2024, 5, 1, 12, tzinfo=UTC)
        assert loaded.created_at.tzinfo is not None and loaded.created_at.utcoffset() == timedelta(
            0
        )
    with pytest.raises(Exception, match="naive"), session_scope(db) as session:
        session.add(Tenant(id="ten_naive", name="n", created_at=datetime(2024, 1, 1)))


def test_process_wide_engine_follows_settings(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from store.db import dispose_engines
    from store.settings import get_settings

    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path}/default.db")
    get_settings.cache_clear()
    try:
        upgrade()
        assert get_engine() is get_engine()
        with session_scope() as session:
            session.add(Tenant(name="default"))
        assert get_sessionmaker() is get_sessionmaker()
    finally:
        dispose_engines()
        get_settings.cache_clear()


def test_jobs_from_before_the_retry_budget_start_with_no_lost_worker(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/old.db"
    upgrade(url, "0001")
    engine = make_engine(url)
    try:
        with engine.begin() as connection:
            connection.exec_driver_sql("INSERT INTO tenants VALUES ('ten_a', 'a', '2025-01-01')")
            connection.exec_driver_sql(
                "INSERT INTO jobs (id, tenant_id, spec, status, step, total_steps, attempt, "
                "cancel_requested, latest_metrics, event_seq, created_at, enqueued_at, "
                "updated_at) VALUES ('job_a', 'ten_a', '{}', 'interrupted', 5, 10, 2, 0, '{}', "
                "0, '2025-01-01', '2025-01-01', '2025-01-01')"
            )
        upgrade(url)
        with engine.connect() as connection:
            lost = connection.exec_driver_sql("SELECT workers_lost FROM jobs").scalar_one()
        assert lost == 0
    finally:
        engine.dispose()
