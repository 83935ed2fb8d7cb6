"""Engine and sessions. SQLite (embedded) and PostgreSQL via psycopg 3 (production)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, cast

from sqlalchemy import CursorResult, Engine, Result, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import StaticPool

from store.settings import get_settings

SQLITE_BUSY_TIMEOUT_MS = 30_000


def normalize_url(url: str) -> str:
    """``postgres://`` and ``postgresql://`` become ``postgresql+psycopg://`` (psycopg 3)."""
    for plain in ("postgres://", "postgresql://"):
        if url.startswith(plain):
            return "postgresql+psycopg://" + url[len(plain) :]
    return url


def is_sqlite(url: str) -> bool:
    return make_url(normalize_url(url)).get_backend_name() == "sqlite"


def make_engine(url: str, *, sqlite_foreign_keys: bool = True, echo: bool = False) -> Engine:
    """An engine for ``url``. SQLite gets WAL, a busy timeout and (unless told) foreign keys on;
    the parent folder of a SQLite file is created."""
    url = normalize_url(url)
    if not is_sqlite(url):
        return create_engine(url, pool_pre_ping=True, echo=echo)

    database = make_url(url).database
    kwargs: dict[str, Any] = {"connect_args": {"check_same_thread": False, "timeout": 30}}
    if not database or database == ":memory:":
        kwargs["poolclass"] = StaticPool  # one shared in-memory database
    else:
        Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, echo=echo, **kwargs)

    @event.listens_for(engine, "connect")
    def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute(f"PRAGMA foreign_keys={'ON' if sqlite_foreign_keys else 'OFF'}")
        cursor.close()

    return engine


def make_async_engine(url: str, *, pool_size: int = 10) -> AsyncEngine:
    """An asyncio engine for the API's hot reads: psycopg's async driver on PostgreSQL,
    aiosqlite on SQLite (with the same pragmas as ``make_engine``)."""
    url = normalize_url(url)
    if not is_sqlite(url):
        # no pre-ping (a round trip a request): a connection found dead after a database restart
        # fails its one request with a 503, and SQLAlchemy then renews the whole pool
        return create_async_engine(url, pool_size=pool_size, max_overflow=pool_size)
    database = make_url(url).database
    kwargs: dict[str, Any] = {"connect_args": {"timeout": 30}}
    if not database or database == ":memory:":
        kwargs["poolclass"] = StaticPool
    engine = create_async_engine(make_url(url).set(drivername="sqlite+aiosqlite"), **kwargs)

    @event.listens_for(engine.sync_engine, "connect")
    def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.close()

    return engine


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(bind=engine, expire_on_commit=False)


_ENGINES: dict[str, Engine] = {}
_SESSIONMAKERS: dict[str, sessionmaker[Session]] = {}
_LOCK = threading.Lock()


def get_engine(url: str | None = None) -> Engine:
    """The process-wide engine for ``url`` (default: ``DATABASE_URL``)."""
    key = normalize_url(url or get_settings().database_url)
    with _LOCK:
        if key not in _ENGINES:
            _ENGINES[key] = make_engine(key)
        return _ENGINES[key]


def get_sessionmaker(url: str | None = None) -> sessionmaker[Session]:
    """The process-wide session factory for ``url`` (default: ``DATABASE_URL``)."""
    engine = get_engine(url)
    key = normalize_url(url or get_settings().database_url)
    with _LOCK:
        if key not in _SESSIONMAKERS:
            _SESSIONMAKERS[key] = make_sessionmaker(engine)
        return _SESSIONMAKERS[key]


def dispose_engines() -> None:
    """Close and forget every process-wide engine (tests; a worker child after fork)."""
    with _LOCK:
        for engine in _ENGINES.values():
            engine.dispose()
        _ENGINES.clear()
        _SESSIONMAKERS.clear()


@contextmanager
def session_scope(factory: sessionmaker[Session] | None = None) -> Iterator[Session]:
    """A session that commits when the block ends, rolls back if it raises, and closes."""
    session = (factory or get_sessionmaker())()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def rowcount(result: Result[Any]) -> int:
    """Rows matched by an UPDATE/DELETE/INSERT run through ``Session.execute``."""
    return cast(CursorResult[Any], result).rowcount
