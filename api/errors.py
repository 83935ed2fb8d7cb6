"""One error shape for every failure: ``{"error": {"code", "message", "param"}}``.

``ApiError`` is raised only by the HTTP layer itself (authentication, request parsing); services
raise domain errors (``store.errors``) and the engine its own (``gan_engine.errors``), each holding
the field at fault as data. The handlers below translate them all into the same envelope.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from http import HTTPStatus
from typing import Any

import psycopg
from boto3.exceptions import Boto3Error
from botocore.exceptions import BotoCoreError, ClientError
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from psycopg_pool import PoolTimeout
from sqlalchemy.exc import DataError, OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException

from gan_engine.artifacts import ArtifactError
from gan_engine.data import DatasetError
from gan_engine.errors import EngineError
from gan_engine.spec import SpecError
from store.errors import (
    Busy,
    Conflict,
    Damaged,
    InvalidRequest,
    LimitExceeded,
    NotFound,
    PayloadTooLarge,
    StoreError,
    Unavailable,
    UnsupportedMediaType,
)
from store.storage import StorageKeyNotFound

log = logging.getLogger("api.errors")
UNAVAILABLE_RETRY_AFTER_S = 5

_CODES: dict[int, str] = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "invalid_request",
    429: "limit_exceeded",
    500: "internal_error",
    503: "unavailable",
}


def code_for(status: int) -> str:
    return _CODES.get(status) or HTTPStatus(status).phrase.lower().replace(" ", "_")


class ApiError(Exception):
    """An error with its HTTP status; ``param`` names the offending field, header or parameter."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        code: str | None = None,
        param: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code or code_for(status)
        self.param = param
        self.headers = dict(headers or {})


def error_body(code: str, message: str, param: str | None = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "param": param}}


def error_response(
    status: int,
    message: str,
    *,
    code: str | None = None,
    param: str | None = None,
    headers: Mapping[str, str] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> JSONResponse:
    body = error_body(code or code_for(status), message, param)
    body.update(extra or {})
    return JSONResponse(body, status_code=status, headers=dict(headers or {}))


# --- translating the errors of others ----------------------------------------------------------

_LOCATIONS = ("body", "query", "path", "header", "cookie")
MAX_LISTED_PROBLEMS = 5

# Domain errors and the status each one answers with; subclasses first where they nest.
DOMAIN_STATUS: tuple[tuple[type[Exception], int], ...] = (
    (NotFound, 404),
    (Conflict, 409),
    (InvalidRequest, 422),
    (PayloadTooLarge, 413),
    (UnsupportedMediaType, 415),
    (LimitExceeded, 429),
    (Busy, 503),
    (Unavailable, 503),
    (Damaged, 500),
)
ENGINE_CODES: tuple[tuple[type[EngineError], str], ...] = (
    (SpecError, "invalid_spec"),
    (DatasetError, "invalid_dataset"),
    (ArtifactError, "invalid_sampling_request"),
)


def validation_param(loc: Sequence[str | int]) -> str | None:
    """``("body", "model", "width")`` → ``"model.width"``; ``("query", "limit")`` → ``"limit"``."""
    parts = [str(p) for p in loc]
    if parts and parts[0] in _LOCATIONS:
        parts = parts[1:]
    return ".".join(parts) or None


def validation_message(errors: Sequence[Any]) -> tuple[str, str | None]:
    """One ``param: message`` line per problem (a handful at most), and the first one's param."""
    lines, first = [], None
    for item in errors[:MAX_LISTED_PROBLEMS]:
        param = validation_param(item.get("loc", ()))
        first = first or param
        message = str(item.get("msg", "invalid value")).removeprefix("Value error, ")[:500]
        lines.append(f"{param}: {message}" if param else message)
    if len(errors) > MAX_LISTED_PROBLEMS:
        lines.append(f"... and {len(errors) - MAX_LISTED_PROBLEMS} more problem(s)")
    return "\n".join(lines) or "invalid request", first


def _api_error(_: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, ApiError)
    return error_response(
        error.status, error.message, code=error.code, param=error.param, headers=error.headers
    )


def _request_validation(_: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, RequestValidationError)
    errors = list(error.errors())
    if any(item.get("type") == "json_invalid" for item in errors):
        detail = next(item for item in errors if item.get("type") == "json_invalid")
        reason = str((detail.get("ctx") or {}).get("error", ""))[:300]
        return error_response(
            400,
            f"the request body is not valid JSON{f' ({reason})' if reason else ''}",
            code="invalid_json",
        )
    message, param = validation_message(errors)
    return error_response(422, message, param=param)


def _http_exception(_: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, StarletteHTTPException)
    message = (
        error.detail if isinstance(error.detail, str) else HTTPStatus(error.status_code).phrase
    )
    return error_response(error.status_code, message, headers=error.headers)


def _engine_error(code: str) -> Any:
    def handler(_: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, EngineError)
        return error_response(422, error.message, code=code, param=error.param)

    return handler


def _domain_error(status: int) -> Any:
    def handler(request: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, StoreError)
        if status >= 500:
            log.error("%s on %s %s: %s", error.code, request.method, request.url.path, error)
        headers = {}
        if error.retry_after_s is not None:
            headers["Retry-After"] = str(max(1, math.ceil(error.retry_after_s)))
        return error_response(
            status, error.message, code=error.code, param=error.param, headers=headers
        )

    return handler


def _out_of_range(request: Request, error: Exception) -> JSONResponse:
    """A value the database refused (too large a number, a NUL byte): our validation should have
    caught it first, so it is logged, but it is the request's value that is at fault."""
    log.warning("database refused a value on %s %s: %s", request.method, request.url.path, error)
    return error_response(
        422, "a value in the request is out of range or not storable", code="invalid_request"
    )


def _not_found_in_storage(_: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, StorageKeyNotFound)
    log.warning("object missing from storage: %s", error.key)
    return error_response(404, "the stored file for this object is missing", code="not_found")


def _unavailable(what: str) -> Any:
    """A backing service (object storage, the database) failed: the client's request was fine and
    can be retried as it is, so 503 with Retry-After rather than a 500."""

    def handler(request: Request, error: Exception) -> JSONResponse:
        log.error("%s failed on %s %s: %s", what, request.method, request.url.path, error)
        return error_response(
            503,
            f"{what} is unavailable right now; retry shortly",
            headers={"Retry-After": str(UNAVAILABLE_RETRY_AFTER_S)},
        )

    return handler


def _unexpected(request: Request, error: Exception) -> JSONResponse:
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=error)
    return error_response(500, "internal error; it has been logged", code="internal_error")


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(RequestValidationError, _request_validation)
    app.add_exception_handler(StarletteHTTPException, _http_exception)
    for engine_error, code in ENGINE_CODES:
        app.add_exception_handler(engine_error, _engine_error(code))
    for domain_error, status in DOMAIN_STATUS:
        app.add_exception_handler(domain_error, _domain_error(status))
    app.add_exception_handler(StorageKeyNotFound, _not_found_in_storage)
    for storage_failure in (BotoCoreError, ClientError, Boto3Error):
        app.add_exception_handler(storage_failure, _unavailable("object storage"))
    for database_down in (OperationalError, psycopg.OperationalError, PoolTimeout):
        app.add_exception_handler(database_down, _unavailable("the database"))
    for refused_value in (DataError, psycopg.DataError):
        app.add_exception_handler(refused_value, _out_of_range)
    app.add_exception_handler(Exception, _unexpected)
