"""Domain errors of the service: what the store and the API's services raise.

Each says what went wrong for the user (``str(error)``), which field, parameter or header is at
fault (``param``) and a stable ``code``. They know nothing of HTTP: ``api.errors`` maps each class
to its status (``NotFound`` 404, ``Conflict`` 409, ``InvalidRequest`` 422, ``PayloadTooLarge``
413, ``UnsupportedMediaType`` 415, ``LimitExceeded`` 429, ``Busy`` and ``Unavailable`` 503).
"""

from __future__ import annotations

from typing import ClassVar


class StoreError(Exception):
    """Base class; ``str(error)`` is written for the user."""

    default_code: ClassVar[str] = "error"

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code or self.default_code
        self.retry_after_s = retry_after_s


class NotFound(StoreError):
    """The object does not exist, or belongs to another tenant."""

    default_code = "not_found"


class Conflict(StoreError):
    """The request contradicts the object's state (finished job, reused idempotency key...)."""

    default_code = "conflict"


class InvalidRequest(StoreError):
    """A request that is well formed but cannot be done as asked (the field is ``param``)."""

    default_code = "invalid_request"


class PayloadTooLarge(StoreError):
    """More data than this service accepts in one request."""

    default_code = "payload_too_large"


class UnsupportedMediaType(StoreError):
    """A body or file of a type this endpoint does not take."""

    default_code = "unsupported_media_type"


class LimitExceeded(StoreError):
    """A tenant quota (e.g. concurrent jobs) would be exceeded."""

    default_code = "limit_exceeded"


class Busy(StoreError):
    """The service is at a capacity shared by all callers (decoding memory, say): retry after
    ``retry_after_s``; nothing was done."""

    default_code = "busy"


class Unavailable(StoreError):
    """Something the service needs is not installed on it (a builtin dataset's files, say): the
    operator must provide it; retrying as is will not help."""

    default_code = "unavailable"


class Damaged(StoreError):
    """Something we stored cannot be read back: a fault on our side, not the caller's."""

    default_code = "damaged"
