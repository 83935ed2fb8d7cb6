"""Every failure of the SDK is an :class:`APIError`; the API's error body is
``{"error": {"code", "message", "param"}}`` (docs/service.md, "HTTP errors")."""

from __future__ import annotations

from typing import Any

import httpx


class APIError(Exception):
    """An error answer of the API (``status`` is its HTTP status), or a request that never got
    one (:class:`APIConnectionError`, ``status`` None). ``param`` names the field, query
    parameter or header at fault, as the API reported it."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str = "error",
        param: str | None = None,
        headers: httpx.Headers | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code
        self.param = param
        self.headers = headers or httpx.Headers()

    def __str__(self) -> str:
        where = f" ({self.param})" if self.param else ""
        status = f"{self.status} " if self.status is not None else ""
        return f"{status}{self.code}{where}: {self.message}"

    @classmethod
    def from_response(cls, response: httpx.Response) -> APIError:
        """The error of a 4xx/5xx answer, read from the API's envelope when it is one."""
        detail: Any = None
        try:
            body = response.json()
            detail = body.get("error") if isinstance(body, dict) else None
        except ValueError:
            pass
        if isinstance(detail, dict) and isinstance(detail.get("message"), str):
            return cls(
                detail["message"],
                status=response.status_code,
                code=str(detail.get("code") or "error"),
                param=detail.get("param") if isinstance(detail.get("param"), str) else None,
                headers=response.headers,
            )
        text = response.text.strip()[:500] or response.reason_phrase
        return cls(text, status=response.status_code, code="http_error", headers=response.headers)


class APIConnectionError(APIError):
    """The service could not be reached (refused, reset, timed out) after the retries."""

    def __init__(self, message: str, *, code: str = "connection_error") -> None:
        super().__init__(message, code=code)


class JobStreamLost(APIConnectionError):
    """Neither the event stream nor the long poll could follow a job (``wait`` gave up)."""
