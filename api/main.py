"""The application: ``create_app(settings)`` builds it; ``uvicorn api.main:create_app --factory``
serves it (``api.main:app`` works too, built on first access from the environment).

Everything a request needs (settings, sessions, storage, the Celery client, the model cache, the
metrics registry) is built here and kept on ``app.state``; the lifespan runs the reaper loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi_offline import FastAPIOffline

from api import web
from api.config import ApiSettings, api_settings
from api.errors import install_error_handlers
from api.keys import VerifiedKeys
from api.limits import BodyLimit, HeaderLimits
from api.routes import account, datasets, health, jobs, models, presets
from api.schemas import JobFieldsIn
from api.services.generation import ForwardBatcher, ModelCache
from api.services.jobs import JobPoller
from api.services.reaper import reaper_loop
from api.telemetry import ApiMetrics, MetricsMiddleware
from gan_engine.spec import Spec
from store.db import get_sessionmaker, make_async_engine
from store.migrate import head_revision
from store.queue import make_celery
from store.reads import async_reads
from store.settings import Settings
from store.storage import storage_from_url

log = logging.getLogger("api")

DESCRIPTION = """GAN training as a service.

Send a training spec to `POST /v1/jobs`; follow the run (`/v1/jobs/{id}`, `/events`, `/metrics`,
`/samples`, `/stream`); sample its generator from `/v1/models/{id}/samples` once it succeeded.

Every `/v1` route needs `Authorization: Bearer <api key>`; an object of another account is a 404.
Errors are `{"error": {"code", "message", "param"}}`; `param` names the offending field (a spec
field path such as `model.conditioning`, a query parameter, a header). Lists return
`{"data": [...], "has_more": bool}`; pass the last item's cursor as `after` for the next page."""


def create_app(settings: Settings | None = None) -> FastAPI:
    config = api_settings(settings)
    config.ensure_dirs()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Everything built so far (modules, torch, the app) lives as long as the process: moved
        # out of the collector's generations, it is not rescanned by every full collection,
        # which otherwise stalled requests for tens of milliseconds (the p99 of submissions).
        gc.freeze()
        reaper = None
        if config.reaper_enabled:
            reaper = asyncio.create_task(
                reaper_loop(
                    sessions=app.state.sessionmaker,
                    celery=app.state.celery,
                    interval_s=config.reap_interval_s,
                    requeue_queued_after_s=config.requeue_queued_after_s,
                    max_attempts=config.max_attempts,
                ),
                name="ganforge-reaper",
            )
        try:
            yield
        finally:
            if reaper is not None:
                reaper.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await reaper
            await app.state.reads.close()
            await app.state.async_engine.dispose()
            app.state.batcher.close()

    app = FastAPIOffline(  # /docs and /redoc with their scripts from the wheel, not a CDN
        title="ganforge",
        version="1.0.0",
        description=DESCRIPTION,
        lifespan=lifespan,
    )
    sessions = get_sessionmaker(config.database_url)
    app.state.settings = config
    app.state.sessionmaker = sessions
    app.state.reads = async_reads(config.database_url)
    app.state.async_engine = make_async_engine(config.database_url)
    app.state.keys = VerifiedKeys(app.state.reads, ttl_s=config.api_key_cache_s)
    app.state.poller = JobPoller(app.state.reads, poll_s=config.long_poll_interval_s)
    app.state.storage = storage_from_url(config.storage_url, config)
    app.state.celery = make_celery(config)
    app.state.model_cache = ModelCache(config.model_cache_size, config.generation_precision)
    app.state.batcher = ForwardBatcher(
        max_batch=config.generate_max_batch, coalesce=config.generate_coalesce
    )
    app.state.metrics = ApiMetrics(sessions)
    app.state.head_revision = head_revision()

    install_error_handlers(app)
    app.add_middleware(MetricsMiddleware, metrics=app.state.metrics)
    app.add_middleware(
        BodyLimit,
        max_bytes=config.max_json_body_bytes,
        streamed=[datasets.UPLOAD_PATH],
        streamed_patterns=[models.SCORES_PATH, models.TRANSLATE_PATH],
    )
    app.add_middleware(HeaderLimits)
    for module in (datasets, jobs, models, account, health, presets):
        app.include_router(module.router)
    web.install(app)
    _openapi_with_spec(app)
    return app


def _openapi_with_spec(app: FastAPI) -> None:
    """The job body is validated by ``gan_engine.spec.parse_spec`` (for its messages and
    normalisation), so its schema, ``Spec``, is added to the components here, with the job's
    own fields beside the spec's (``JobFieldsIn``: name, tags, metadata, webhook)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
            )
            spec = Spec.model_json_schema(ref_template="#/components/schemas/{model}")
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            for name, definition in spec.pop("$defs", {}).items():
                if name in components:
                    raise RuntimeError(f"OpenAPI schema name clash: {name}")
                components[name] = definition
            fields = JobFieldsIn.model_json_schema(ref_template="#/components/schemas/{model}")
            for name, definition in fields.pop("$defs", {}).items():
                components.setdefault(name, definition)  # shared with responses: the same
            spec["properties"] |= fields["properties"]
            components["Spec"] = spec
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


_default_app: FastAPI | None = None


def __getattr__(name: str) -> Any:
    """``api.main.app``: the app for this process's environment, built on first use."""
    global _default_app
    if name == "app":
        if _default_app is None:
            _default_app = create_app()
        return _default_app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["ApiSettings", "create_app"]
