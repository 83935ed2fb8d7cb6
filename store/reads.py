"""The API's hot reads on asyncio: one row by a prepared statement, nothing else.

A status poll is one indexed read; through SQLAlchemy's asyncio layer it costs about twice what
psycopg alone does (measured: 530 µs against 260 µs a read, connection included). So on
PostgreSQL these statements are compiled once by SQLAlchemy, to SQL text, and run on psycopg's
own async pool; on SQLite (the embedded mode, where speed is not the point) they run on an
aiosqlite engine. The statements are the same SQLAlchemy objects either way.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any, Protocol

import orjson
import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import set_json_loads
from psycopg_pool import AsyncConnectionPool
from sqlalchemy import Select
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import make_url

from store.db import is_sqlite, make_async_engine, normalize_url

Row = Mapping[str, Any]
# autocommit: a read needs no transaction, and returning a connection to the pool then costs no
# COMMIT round trip
CONNECTION: dict[str, Any] = {
    "row_factory": dict_row,
    "autocommit": True,
    "options": "-c TimeZone=UTC",
}


class AsyncReads(Protocol):
    async def one(self, statement: Select[Any], **params: Any) -> Row | None: ...

    async def close(self) -> None: ...


async def _fast_json(connection: psycopg.AsyncConnection[Any]) -> None:
    """JSON and JSONB columns (a job's spec, its metrics) decoded by orjson."""
    set_json_loads(orjson.loads, connection)


class PsycopgReads:
    """PostgreSQL: statements compiled to psycopg's ``%(name)s`` SQL once, run on its pool.

    The pool belongs to the event loop that first reads (a server has one); a read from another
    loop (a test client making one loop a request) opens a connection of its own instead."""

    def __init__(self, url: str, *, max_size: int = 10) -> None:
        self.conninfo = (
            make_url(normalize_url(url))
            .set(drivername="postgresql")
            .render_as_string(hide_password=False)
        )
        self.max_size = max_size
        self._sql: dict[int, str] = {}
        self._pool: AsyncConnectionPool | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def _compiled(self, statement: Select[Any]) -> str:
        sql = self._sql.get(id(statement))
        if sql is None:
            sql = str(statement.compile(dialect=postgresql.psycopg.dialect()))
            self._sql[id(statement)] = sql
        return sql

    async def _pool_of_this_loop(self) -> AsyncConnectionPool | None:
        loop = asyncio.get_running_loop()
        if self._pool is None:
            self._pool = AsyncConnectionPool(
                self.conninfo,
                min_size=1,
                max_size=self.max_size,
                open=False,
                kwargs=CONNECTION,
                configure=_fast_json,
            )
            self._loop = loop
            await self._pool.open(wait=False)
        return self._pool if self._loop is loop else None

    async def one(self, statement: Select[Any], **params: Any) -> Row | None:
        sql = self._compiled(statement)
        pool = await self._pool_of_this_loop()
        if pool is None:
            async with await psycopg.AsyncConnection.connect(self.conninfo, **CONNECTION) as own:
                await _fast_json(own)
                return await (await own.execute(sql, params)).fetchone()
        async with pool.connection() as connection:
            return await (await connection.execute(sql, params)).fetchone()

    async def close(self) -> None:
        if self._pool is not None and self._loop is asyncio.get_running_loop():
            await self._pool.close()
            self._pool = None


class EngineReads:
    """SQLite: the same statements on an aiosqlite engine."""

    def __init__(self, url: str) -> None:
        self.engine = make_async_engine(url)

    async def one(self, statement: Select[Any], **params: Any) -> Row | None:
        async with self.engine.connect() as connection:
            result = await connection.execute(statement, params)
            return result.mappings().one_or_none()

    async def close(self) -> None:
        await self.engine.dispose()


def async_reads(url: str) -> AsyncReads:
    return EngineReads(url) if is_sqlite(url) else PsycopgReads(url)
