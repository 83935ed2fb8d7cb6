"""Errors the store raises; the API maps them to HTTP statuses (404, 409, 429)."""


class StoreError(Exception):
    """Base class; ``str(error)`` is written for the user."""


class NotFound(StoreError):
    """The object does not exist, or belongs to another tenant."""


class Conflict(StoreError):
    """The request contradicts the object's state (finished job, reused idempotency key...)."""


class LimitExceeded(StoreError):
    """A tenant quota (e.g. concurrent jobs) would be exceeded."""
