"""One error shape for every failure: ``{"error": {"code", "message", "param"}}``.

``ApiError`` is raised by our own code; the handlers below translate everything else (request
validation, spec validation, the store's and the engine's errors) into the same envelope.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from http import HTTPStatus
from typing import Any

from boto3.exceptions import Boto3Error
from botocore.exceptions import BotoCoreError, ClientError
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException

from gan_engine.artifacts import ArtifactError
from gan_engine.data import DatasetError
from gan_engine.spec import SpecError
from store.errors import Conflict, LimitExceeded, NotFound
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
_SPEC_SECTIONS = r"(?:preset|dataset|model|loss|optimizer|training|monitor)"
_FIELD_IN_MESSAGE = re.compile(rf"\b({_SPEC_SECTIONS}(?:\.[a-z_]+)+)\b")


def validation_param(loc: Sequence[str | int]) -> str | None:
    """``("body", "model", "width")`` → ``"model.width"``; ``("query", "limit")`` → ``"limit"``."""
    parts = [str(p) for p in loc]
    if parts and parts[0] in _LOCATIONS:
        parts = parts[1:]
    return ".".join(parts) or None


def validation_message(errors: Sequence[Any]) -> tuple[str, str | None]:
    """One ``param: message`` line per problem, and the first problem's param."""
    lines, first = [], None
    for item in errors:
        param = validation_param(item.get("loc", ()))
        first = first or param
        message = str(item.get("msg", "invalid value")).removeprefix("Value error, ")
        lines.append(f"{param}: {message}" if param else message)
    return "\n".join(lines) or "invalid request", first


def spec_error_param(message: str) -> str | None:
    """The field a ``SpecError`` names: ``"loss.kind: ..."`` → ``loss.kind``. Checks across fields
    are reported at ``spec: ...``; their message starts with the field they are about."""
    head, sep, rest = message.partition("\n")[0].partition(": ")
    if not sep:
        return None
    if head != "spec":
        return head
    found = _FIELD_IN_MESSAGE.search(rest)
    return found.group(1) if found else None


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
        reason = (detail.get("ctx") or {}).get("error", "")
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


def _spec_error(_: Request, error: Exception) -> JSONResponse:
    message = str(error)
    return error_response(422, message, code="invalid_spec", param=spec_error_param(message))


def _status(status: int, code: str | None = None) -> Any:
    def handler(_: Request, error: Exception) -> JSONResponse:
        return error_response(status, str(error), code=code)

    return handler


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
    app.add_exception_handler(SpecError, _spec_error)
    app.add_exception_handler(NotFound, _status(404))
    app.add_exception_handler(Conflict, _status(409))
    app.add_exception_handler(LimitExceeded, _status(429))
    app.add_exception_handler(DatasetError, _status(422, "invalid_dataset"))
    app.add_exception_handler(ArtifactError, _status(422, "invalid_sampling_request"))
    app.add_exception_handler(StorageKeyNotFound, _not_found_in_storage)
    for storage_failure in (BotoCoreError, ClientError, Boto3Error):
        app.add_exception_handler(storage_failure, _unavailable("object storage"))
    app.add_exception_handler(OperationalError, _unavailable("the database"))
    app.add_exception_handler(Exception, _unexpected)
