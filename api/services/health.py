"""Readiness: the database (reachable, migrated to head), the broker and object storage."""

from __future__ import annotations

from collections.abc import Callable

import anyio
from alembic.runtime.migration import MigrationContext
from celery import Celery
from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker

from store.queue import broker_ok
from store.storage import ObjectStorage

CHECK_TIMEOUT_S = 5.0
OK = "ok"


def check_database(sessions: sessionmaker[Session], head: str | None) -> str:
    with sessions() as session:
        session.execute(text("SELECT 1"))
        current = MigrationContext.configure(session.connection()).get_current_revision()
    if current != head:
        return f"schema at revision {current}, code expects {head}: run the migrations"
    return OK


def check_broker(celery: Celery) -> str:
    return OK if broker_ok(app=celery) else "cannot connect to the broker"


def check_storage(storage: ObjectStorage) -> str:
    storage.check()
    return OK


async def _run(check: Callable[[], str]) -> str:
    with anyio.move_on_after(CHECK_TIMEOUT_S):
        try:
            return await anyio.to_thread.run_sync(check, abandon_on_cancel=True)
        except Exception as error:  # the answer names what failed; never a 500
            return f"{type(error).__name__}: {error}"[:300]
    return f"no answer within {CHECK_TIMEOUT_S:g} s"


async def readiness(
    *, sessions: sessionmaker[Session], head: str | None, celery: Celery, storage: ObjectStorage
) -> dict[str, str]:
    """``{"database": "ok", "broker": "...reason...", "storage": "ok"}``, checked concurrently."""
    checks: dict[str, Callable[[], str]] = {
        "database": lambda: check_database(sessions, head),
        "broker": lambda: check_broker(celery),
        "storage": lambda: check_storage(storage),
    }
    results: dict[str, str] = {}

    async def run(name: str, check: Callable[[], str]) -> None:
        results[name] = await _run(check)

    async with anyio.create_task_group() as group:
        for name, check in checks.items():
            group.start_soon(run, name, check)
    return {name: results[name] for name in checks}
