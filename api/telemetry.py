"""Prometheus metrics of one app: requests by route template, jobs by status, generation time.

Each app has its own ``CollectorRegistry`` (tests build many apps in one process). The jobs gauge
is computed on scrape by one ``GROUP BY`` query, so nothing has to keep it up to date.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from store.models import JOB_STATUSES, Job

log = logging.getLogger("api.telemetry")

UNMATCHED = "<unmatched>"


class JobsByStatus(Collector):
    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self.sessions = sessions

    def collect(self) -> Iterator[Metric]:
        gauge = GaugeMetricFamily(
            "ganforge_jobs", "jobs by status (all tenants)", labels=["status"]
        )
        try:
            with self.sessions() as session:
                rows = session.execute(select(Job.status, func.count()).group_by(Job.status)).all()
        except Exception:  # a scrape must not fail because the database is down
            log.warning("cannot count jobs for /metrics", exc_info=True)
            return
        counts = {status: 0 for status in JOB_STATUSES} | {s: int(n) for s, n in rows}
        for status, count in counts.items():
            gauge.add_metric([status], count)
        yield gauge

    def describe(self) -> Iterator[Metric]:
        return iter(())  # collected only on scrape: registration must not query the database


class ApiMetrics:
    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.requests = Counter(
            "ganforge_http_requests",
            "HTTP requests by method, route template and status",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "ganforge_http_request_duration_seconds",
            "HTTP request latency by method and route template (streams: their whole duration)",
            ["method", "route"],
            registry=self.registry,
        )
        self.generation = Histogram(
            "ganforge_generation_duration_seconds",
            "time to generate samples from a model (artifact load included), by format",
            ["format"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=self.registry,
        )
        self.registry.register(JobsByStatus(sessions))


class MetricsMiddleware:
    """Counts each HTTP request under its route template (``/v1/jobs/{job_id}``), never its raw
    path, so ids do not explode the label set."""

    def __init__(self, app: ASGIApp, metrics: ApiMetrics) -> None:
        self.app = app
        self.metrics = metrics
        # bounded: route templates x methods x statuses
        self._labelled: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500
        started = time.perf_counter()

        async def send_and_record(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_and_record)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or UNMATCHED
            count, latency = self._children(scope.get("method", ""), template, status)
            count.inc()
            latency.observe(time.perf_counter() - started)

    def _children(self, method: str, template: str, status: int) -> tuple[Any, Any]:
        """The labelled counter and histogram of a (method, route, status), looked up once:
        ``labels()`` takes a lock and builds a key on every call."""
        key = (method, template, status)
        found = self._labelled.get(key)
        if found is None:
            found = (
                self.metrics.requests.labels(method, template, str(status)),
                self.metrics.latency.labels(method, template),
            )
            self._labelled[key] = found
        return found
