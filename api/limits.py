"""Limits on what a request may carry: header count and size (431) and body size (413), each
answered in the service's error envelope before the route reads anything it should not.

Uploads (``POST /v1/datasets``) stream to disk under their own limit, ``MAX_UPLOAD_BYTES``.
"""

from __future__ import annotations

import re
from collections.abc import Collection

from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.errors import error_response

MAX_HEADERS = 64
MAX_HEADER_BYTES = 16 * 1024  # names and values together


class HeaderLimits:
    def __init__(self, app: ASGIApp, *, max_headers: int = MAX_HEADERS,
                 max_bytes: int = MAX_HEADER_BYTES) -> None:  # fmt: skip
        self.app, self.max_headers, self.max_bytes = app, max_headers, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            headers = scope.get("headers") or []
            size = sum(len(name) + len(value) for name, value in headers)
            if len(headers) > self.max_headers or size > self.max_bytes:
                response = error_response(
                    431,
                    f"request headers too large: at most {self.max_headers} headers and "
                    f"{self.max_bytes:,} bytes (got {len(headers)}, {size:,} bytes)",
                    code="headers_too_large",
                )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


class BodyLimit:
    """Bodies larger than ``max_bytes`` are a 413: at once when ``Content-Length`` says so, else
    as soon as the streamed bytes pass it (the route's read then raises, and the handlers answer).
    Paths in ``streamed``, or matching one of ``streamed_patterns`` (POST only), enforce their
    own limit."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        max_bytes: int,
        streamed: Collection[str] = (),
        streamed_patterns: Collection[re.Pattern[str]] = (),
    ) -> None:
        self.app, self.max_bytes, self.streamed = app, max_bytes, frozenset(streamed)
        self.streamed_patterns = tuple(streamed_patterns)

    def _streamed(self, path: str) -> bool:
        return path in self.streamed or any(p.fullmatch(path) for p in self.streamed_patterns)

    def _too_large(self) -> str:
        return f"the request body is larger than {self.max_bytes:,} bytes (MAX_JSON_BODY_BYTES)"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or (scope["method"] == "POST" and self._streamed(scope["path"])):
            await self.app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_bytes:
            response = error_response(413, self._too_large(), param="body")
            await response(scope, receive, send)
            return
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise HTTPException(413, self._too_large())
            return message

        await self.app(scope, limited_receive, send)
