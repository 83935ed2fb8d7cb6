"""Sending a request with retries: 429 and 503 answers (any method: the API did nothing), and
transport failures when resending is safe (nothing was sent, or the call is idempotent: GET,
PUT, DELETE, and a POST carrying an ``Idempotency-Key``). A ``Retry-After`` header sets the
delay; without one the delay doubles from ``backoff_s`` up to ``max_backoff_s``."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

import httpx

from ganforge.errors import APIConnectionError, APIError

RETRY_STATUSES = frozenset({429, 503})
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
# failures before the request left this machine: resending cannot do anything twice
NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
NOT_RETRYABLE = (httpx.UnsupportedProtocol, httpx.LocalProtocolError)


@dataclass(frozen=True)
class RetryPolicy:
    max_retries: int = 4
    backoff_s: float = 0.5
    max_backoff_s: float = 30.0
    max_retry_after_s: float = 120.0  # a longer Retry-After is cut to this

    def delay(self, retry: int, response: httpx.Response | None = None) -> float:
        """Seconds to wait before retry number ``retry`` (0 for the first)."""
        hinted = retry_after_s(response) if response is not None else None
        if hinted is not None:
            return min(hinted, self.max_retry_after_s)
        return float(min(self.max_backoff_s, self.backoff_s * 2**retry))


def retry_after_s(response: httpx.Response) -> float | None:
    """``Retry-After`` as seconds: a number of seconds or an HTTP date; None when absent."""
    value = response.headers.get("Retry-After")
    if value is None:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


@dataclass(frozen=True)
class Upload:
    """A file sent as the multipart field ``file``; reopened for every try."""

    path: Path
    filename: str
    fields: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Call:
    method: str
    path: str
    params: Any = None
    json: Any = None
    headers: Mapping[str, str] | None = None
    upload: Upload | None = None
    timeout: httpx.Timeout | None = None
    idempotent: bool | None = None  # None: by the method

    @property
    def safe_to_resend(self) -> bool:
        return self.idempotent if self.idempotent is not None else self.method in IDEMPOTENT_METHODS

    @contextmanager
    def request(self, http: httpx.Client | httpx.AsyncClient) -> Iterator[httpx.Request]:
        extra: dict[str, Any] = {}
        if self.timeout is not None:
            extra["timeout"] = self.timeout
        if self.upload is None:
            yield http.build_request(
                self.method, self.path, params=self.params, json=self.json,
                headers=self.headers, **extra,
            )  # fmt: skip
            return
        with self.upload.path.open("rb") as content:
            yield http.build_request(
                self.method, self.path, params=self.params, headers=self.headers,
                files={"file": (self.upload.filename, content, "application/octet-stream")},
                data=dict(self.upload.fields), **extra,
            )  # fmt: skip


def _unreachable(http: httpx.Client | httpx.AsyncClient, error: Exception) -> APIConnectionError:
    return APIConnectionError(f"cannot reach {http.base_url}: {error or type(error).__name__}")


def _should_retry_transport(call: Call, error: httpx.TransportError) -> bool:
    if isinstance(error, NOT_RETRYABLE):
        return False
    return isinstance(error, NOT_SENT) or call.safe_to_resend


def _raise_for_error(response: httpx.Response) -> None:
    if response.is_error:
        raise APIError.from_response(response)


class Transport:
    """Retries around an ``httpx.Client``; ``sleep`` is injectable for tests."""

    def __init__(
        self,
        http: httpx.Client,
        policy: RetryPolicy | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.http, self.policy, self.sleep = http, policy or RetryPolicy(), sleep

    def send(self, call: Call, *, stream: bool = False) -> httpx.Response:
        """The answer (2xx/3xx); a 4xx/5xx raises :class:`APIError`. With ``stream`` the body
        is not read yet: close the response."""
        retry = 0
        while True:
            try:
                with call.request(self.http) as request:
                    response = self.http.send(request, stream=stream)
            except httpx.TransportError as error:
                if retry >= self.policy.max_retries or not _should_retry_transport(call, error):
                    raise _unreachable(self.http, error) from error
                self.sleep(self.policy.delay(retry))
                retry += 1
                continue
            if response.status_code in RETRY_STATUSES and retry < self.policy.max_retries:
                delay = self.policy.delay(retry, response)
                response.close()
                self.sleep(delay)
                retry += 1
                continue
            if response.is_error and stream:
                response.read()
                response.close()
            _raise_for_error(response)
            return response


class AsyncTransport:
    """:class:`Transport` for an ``httpx.AsyncClient``."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        policy: RetryPolicy | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.http, self.policy, self.sleep = http, policy or RetryPolicy(), sleep

    async def send(self, call: Call, *, stream: bool = False) -> httpx.Response:
        retry = 0
        while True:
            try:
                with call.request(self.http) as request:
                    response = await self.http.send(request, stream=stream)
            except httpx.TransportError as error:
                if retry >= self.policy.max_retries or not _should_retry_transport(call, error):
                    raise _unreachable(self.http, error) from error
                await self.sleep(self.policy.delay(retry))
                retry += 1
                continue
            if response.status_code in RETRY_STATUSES and retry < self.policy.max_retries:
                delay = self.policy.delay(retry, response)
                await response.aclose()
                await self.sleep(delay)
                retry += 1
                continue
            if response.is_error and stream:
                await response.aread()
                await response.aclose()
            _raise_for_error(response)
            return response
