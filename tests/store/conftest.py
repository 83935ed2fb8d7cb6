"""Fixtures of the store tests: migrated SQLite copies and the session's PostgreSQL database."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker

from store.db import make_engine, make_sessionmaker
from store.migrate import upgrade
from store.models import Base
from tests.fixtures.services import pg_sessionmaker, pg_url, s3_endpoint  # noqa: F401


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite file migrated once; tests get copies."""
    path = tmp_path_factory.mktemp("sqlite") / "template.db"
    upgrade(f"sqlite:///{path}")
    return path


@pytest.fixture
def sqlite_url(sqlite_template: Path, tmp_path: Path) -> str:
    path = tmp_path / "ganforge.db"
    shutil.copyfile(sqlite_template, path)
    return f"sqlite:///{path}"


@pytest.fixture(params=["sqlite", "postgres"])
def db(request: pytest.FixtureRequest) -> Iterator[sessionmaker[Session]]:
    """A session factory on a migrated, empty database of each dialect."""
    if request.param == "postgres":
        factory: sessionmaker[Session] = request.getfixturevalue("pg_sessionmaker")
        tables = ", ".join(table.name for table in Base.metadata.sorted_tables)
        with factory.begin() as session:
            session.execute(text(f"TRUNCATE {tables} CASCADE"))
        yield factory
        return
    engine = make_engine(request.getfixturevalue("sqlite_url"))
    yield make_sessionmaker(engine)
    engine.dispose()
