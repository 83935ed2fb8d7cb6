"""The reference for status polls: the least an async FastAPI app can do to answer one.

``GET /v1/jobs/{id}`` does the same two reads as ganforge (the API key by its hash, then the job
row by id and tenant) on the same PostgreSQL with psycopg's async pool, and returns the row; the
``constant`` app answers a fixed body, the ceiling of FastAPI + uvicorn on this machine.

    REFERENCE_DATABASE_URL=postgresql://... uvicorn benchmarks.reference_app:app
    uvicorn benchmarks.reference_app:constant
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Header, HTTPException
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

pool = AsyncConnectionPool(os.environ.get("REFERENCE_DATABASE_URL", ""), max_size=10, open=False)


@asynccontextmanager
async def lifespan(_: FastAPI) -> AsyncIterator[None]:
    await pool.open()
    yield
    await pool.close()


app = FastAPI(lifespan=lifespan)
constant = FastAPI()


@app.get("/v1/jobs/{job_id}")
async def get_job(job_id: str, authorization: str = Header()) -> dict[str, Any]:
    digest = hashlib.sha256(authorization.removeprefix("Bearer ").encode()).hexdigest()
    async with pool.connection() as connection:
        connection.row_factory = dict_row
        key = await (
            await connection.execute(
                "SELECT tenant_id FROM api_keys WHERE key_hash = %s AND revoked_at IS NULL",
                (digest,),
            )
        ).fetchone()
        if key is None:
            raise HTTPException(401)
        job = await (
            await connection.execute(
                "SELECT * FROM jobs WHERE id = %s AND tenant_id = %s", (job_id, key["tenant_id"])
            )
        ).fetchone()
    if job is None:
        raise HTTPException(404)
    return job


@constant.get("/v1/jobs/{job_id}")
async def constant_job(job_id: str) -> dict[str, str]:
    return {"id": job_id, "status": "queued"}
