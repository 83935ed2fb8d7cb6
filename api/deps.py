"""Request dependencies: ``SessionDep``, ``SettingsDep``, ``StorageDep``, ``TenantDep``...

Everything a request needs lives on ``app.state`` (built by ``create_app``), so several apps with
different settings can live in one process (tests do). The getters are ``async def`` though they
await nothing: FastAPI runs a plain ``def`` dependency in its thread pool, a hop that cost a status
poll more than its database read.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated

from celery import Celery
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.orm import Session, sessionmaker

from api.config import ApiSettings
from api.errors import ApiError
from api.keys import VerifiedKeys
from api.services.generation import ForwardBatcher, ModelCache
from api.services.jobs import JobPoller
from api.telemetry import ApiMetrics
from store.reads import AsyncReads
from store.storage import ObjectStorage


@dataclass(frozen=True)
class Caller:
    """Who is asking: the tenant every object of the request must belong to."""

    tenant_id: str
    key_id: str


async def get_settings(request: Request) -> ApiSettings:
    settings: ApiSettings = request.app.state.settings
    return settings


async def get_sessionmaker(request: Request) -> sessionmaker[Session]:
    factory: sessionmaker[Session] = request.app.state.sessionmaker
    return factory


def get_session(factory: SessionmakerDep) -> Iterator[Session]:
    """A session for the request; services commit what they write, the rest is rolled back."""
    with factory() as session:
        yield session


async def get_reads(request: Request) -> AsyncReads:
    reads: AsyncReads = request.app.state.reads
    return reads


async def get_async_engine(request: Request) -> AsyncEngine:
    engine: AsyncEngine = request.app.state.async_engine
    return engine


async def get_poller(request: Request) -> JobPoller:
    poller: JobPoller = request.app.state.poller
    return poller


async def get_storage(request: Request) -> ObjectStorage:
    storage: ObjectStorage = request.app.state.storage
    return storage


async def get_celery(request: Request) -> Celery:
    celery: Celery = request.app.state.celery
    return celery


async def get_model_cache(request: Request) -> ModelCache:
    cache: ModelCache = request.app.state.model_cache
    return cache


async def get_batcher(request: Request) -> ForwardBatcher:
    batcher: ForwardBatcher = request.app.state.batcher
    return batcher


async def get_metrics(request: Request) -> ApiMetrics:
    metrics: ApiMetrics = request.app.state.metrics
    return metrics


SettingsDep = Annotated[ApiSettings, Depends(get_settings)]
SessionmakerDep = Annotated[sessionmaker[Session], Depends(get_sessionmaker)]
SessionDep = Annotated[Session, Depends(get_session, scope="function")]
PollerDep = Annotated[JobPoller, Depends(get_poller)]
AsyncEngineDep = Annotated[AsyncEngine, Depends(get_async_engine)]
ReadsDep = Annotated[AsyncReads, Depends(get_reads)]
StorageDep = Annotated[ObjectStorage, Depends(get_storage)]
CeleryDep = Annotated[Celery, Depends(get_celery)]
ModelCacheDep = Annotated[ModelCache, Depends(get_model_cache)]
BatcherDep = Annotated[ForwardBatcher, Depends(get_batcher)]
MetricsDep = Annotated[ApiMetrics, Depends(get_metrics)]

bearer = HTTPBearer(
    auto_error=False,
    description="an API key: `Authorization: Bearer gf_...` (`ganforge keys create` makes one)",
)
UNAUTHORIZED_HEADERS = {"WWW-Authenticate": "Bearer"}


async def get_caller(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Caller:
    """The key's tenant; verified keys are remembered briefly (see ``api.keys``), so most
    requests read nothing to authenticate and hold no database connection for it."""
    if credentials is None:
        raise ApiError(
            401,
            "missing API key: send the header 'Authorization: Bearer <key>'",
            param="Authorization",
            headers=UNAUTHORIZED_HEADERS,
        )
    keys: VerifiedKeys = request.app.state.keys
    verified = await keys.verify(credentials.credentials)
    if verified is None:
        raise ApiError(
            401, "invalid or revoked API key", param="Authorization", headers=UNAUTHORIZED_HEADERS
        )
    return Caller(tenant_id=verified.tenant_id, key_id=verified.key_id)


TenantDep = Annotated[Caller, Depends(get_caller)]


def require_metrics_token(
    settings: SettingsDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> None:
    """``METRICS_TOKEN``, when set, guards ``/metrics`` (compared in constant time)."""
    token = settings.metrics_token
    if token is None:
        return
    given = credentials.credentials if credentials is not None else ""
    if not hmac.compare_digest(given.encode(), token.get_secret_value().encode()):
        raise ApiError(
            401,
            "GET /metrics needs 'Authorization: Bearer <METRICS_TOKEN>'",
            param="Authorization",
            headers=UNAUTHORIZED_HEADERS,
        )
