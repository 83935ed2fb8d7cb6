"""Webhook deliveries: one try of one delivery per task (queue ``webhooks``, see store.webhooks).

A try POSTs the stored body to the job's URL with a timeout (``WEBHOOK_TIMEOUT_S``) and no
redirects. A 2xx answer delivers it; anything else (an error status, a refused connection, a
timeout) is recorded and the next try is scheduled after ``WEBHOOK_BACKOFF_S``, doubling each
time, until ``WEBHOOK_MAX_ATTEMPTS`` tries have failed. An address this service may not call
(``WEBHOOK_ALLOWED_ADDRESSES``) fails the delivery at once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

import httpx
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from store.db import get_sessionmaker, session_scope
from store.models import DeliveryStatus, Job, WebhookDelivery, utcnow
from store.queue import enqueue_webhook
from store.settings import Settings
from store.webhooks import (
    DELIVERY_HEADER,
    SIGNATURE_HEADER,
    address_problem,
    body_bytes,
    signature,
    system_resolve,
)

log = logging.getLogger("ganforge.webhooks")

MAX_ERROR_CHARS = 300
USER_AGENT = "ganforge-webhooks/1"

# Schedules the next try: (delivery id, seconds from now). Tests replace it.
Schedule = Callable[[str, float], None]


def _enqueue_later(delivery_id: str, countdown_s: float) -> None:
    enqueue_webhook(delivery_id, countdown_s=countdown_s)


def backoff_s(settings: Settings, failed_tries: int) -> float:
    """The wait after the ``failed_tries``-th failed try."""
    return float(settings.webhook_backoff_s * 2 ** (failed_tries - 1))


def _post(
    url: str, body: bytes, headers: dict[str, str], timeout_s: float
) -> tuple[int | None, str | None]:
    try:
        with (
            httpx.Client(timeout=timeout_s, follow_redirects=False) as client,
            # the status line is the answer: the body is never read, whatever its size
            client.stream("POST", url, content=body, headers=headers) as answer,
        ):
            pass
    except httpx.TimeoutException:
        return None, f"no answer within {timeout_s:g} s"
    except httpx.HTTPError as error:
        return None, f"{type(error).__name__}: {error}"[:MAX_ERROR_CHARS]
    if 200 <= answer.status_code < 300:
        return answer.status_code, None
    return answer.status_code, f"answered {answer.status_code}"


def deliver(
    delivery_id: str,
    *,
    settings: Settings,
    sessions: sessionmaker[Session] | None = None,
    schedule: Schedule = _enqueue_later,
    resolve: Callable[[str], list[str]] = system_resolve,
) -> str:
    """Make the next try of a pending delivery; returns its status after it (a delivery that is
    not pending, or was deleted with its job, is left alone)."""
    sessions = sessions or get_sessionmaker(settings.database_url)
    with session_scope(sessions) as session:
        row = session.execute(
            select(WebhookDelivery, Job.webhook)
            .join(Job, Job.id == WebhookDelivery.job_id)
            .where(WebhookDelivery.id == delivery_id)
        ).one_or_none()
        if row is None:
            return "gone"
        delivery, config = row
        if delivery.status != DeliveryStatus.PENDING:
            return str(delivery.status)
        url, payload = delivery.url, delivery.payload
        secret = (config or {}).get("secret")
    started = time.monotonic()
    at = utcnow()
    status_code, error, final = _try(url, payload, delivery_id, secret, settings, resolve)
    attempt: dict[str, Any] = {
        "at": at.isoformat(),
        "duration_ms": round((time.monotonic() - started) * 1000, 1),
        "status_code": status_code,
        "error": error,
    }
    with session_scope(sessions) as session:
        delivery = session.get(WebhookDelivery, delivery_id, with_for_update=True)
        if delivery is None or delivery.status != DeliveryStatus.PENDING:
            return "gone" if delivery is None else str(delivery.status)
        attempts = [*delivery.attempts, attempt]
        delivery.attempts = attempts
        if error is None:
            delivery.status, delivery.delivered_at, delivery.next_attempt_at = (
                DeliveryStatus.DELIVERED, utcnow(), None,
            )  # fmt: skip
        elif final or len(attempts) >= settings.webhook_max_attempts:
            delivery.status, delivery.next_attempt_at = DeliveryStatus.FAILED, None
        else:
            wait_s = backoff_s(settings, len(attempts))
            delivery.next_attempt_at = utcnow() + timedelta(seconds=wait_s)
        status, next_at = str(delivery.status), delivery.next_attempt_at
    if status == DeliveryStatus.PENDING and next_at is not None:
        schedule(delivery_id, backoff_s(settings, len(attempts)))
    log.info("webhook %s to %s: %s (%s)", delivery_id, url, status, error or status_code)
    return status


def _try(
    url: str,
    payload: dict[str, Any],
    delivery_id: str,
    secret: str | None,
    settings: Settings,
    resolve: Callable[[str], list[str]],
) -> tuple[int | None, str | None, bool]:
    """``(status code, error, final)``: one POST, unless the address is refused (final)."""
    refused = address_problem(
        urlsplit(url).hostname or "", settings.webhook_allowed_addresses, resolve=resolve
    )
    if refused:
        return None, refused, True
    body = body_bytes(payload)
    headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT,
               DELIVERY_HEADER: delivery_id}  # fmt: skip
    if secret:
        headers[SIGNATURE_HEADER] = signature(secret, int(time.time()), body)
    status_code, error = _post(url, body, headers, settings.webhook_timeout_s)
    return status_code, error, False
