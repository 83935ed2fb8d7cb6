"""Webhooks: a job tells a URL what happens to it (started, progress, warning, completed).

A notification is a ``webhook_deliveries`` row written in the transaction of what it reports (an
outbox): it exists if and only if that change committed. Once the session commits, each new
delivery is sent to the ``webhooks`` Celery queue, whose worker makes the HTTP tries
(``worker.webhooks``) outside the training loop and the request path; the reaper sends again a
pending delivery whose message was lost.

The body is JSON (``id``, ``type``, ``created_at``, ``job``, ``event``). With a secret, it is signed
as Stripe signs: ``Ganforge-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "t.body">``;
``Ganforge-Delivery`` carries the delivery id for receivers that must be idempotent.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import logging
import socket
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Final
from urllib.parse import urlsplit

from sqlalchemy import event as orm_event
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from store.models import (
    DeliveryStatus,
    Job,
    JobEvent,
    WebhookDelivery,
    WebhookEvent,
    new_id,
    utcnow,
)

log = logging.getLogger("ganforge.webhooks")

MAX_URL_CHARS: Final = 2000
MAX_SECRET_CHARS: Final = 200
SIGNATURE_HEADER: Final = "Ganforge-Signature"
DELIVERY_HEADER: Final = "Ganforge-Delivery"
SIGNATURE_TOLERANCE_S: Final = 300
_PENDING_KEY: Final = "ganforge_webhook_deliveries"


class AddressPolicy(StrEnum):
    """Which addresses deliveries may go to (``WEBHOOK_ALLOWED_ADDRESSES``)."""

    PUBLIC = "public"  # only global addresses: no loopback, link-local, private or reserved
    LOOPBACK = "loopback"  # public ones and this machine (the embedded mode's default)
    ANY = "any"  # also private networks (a service whose receivers live beside it)


# --- the URL and where it leads -----------------------------------------------------------------


def url_problem(url: str) -> str | None:
    """What ``url`` must be to be a webhook URL ("a webhook URL must be ..."; its form only), or
    None when it is."""
    if len(url) > MAX_URL_CHARS:
        return f"at most {MAX_URL_CHARS} characters"
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018  (raises on a bad port)
    except ValueError as error:
        return f"a valid URL ({error})"
    if parts.scheme not in ("http", "https"):
        return "an http or https URL"
    if parts.username is not None or parts.password is not None:
        return "without credentials (send a secret and verify the signature instead)"
    if not parts.hostname:
        return "a URL with a host"
    return None


def _refused(address: ipaddress.IPv4Address | ipaddress.IPv6Address, policy: AddressPolicy) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    if address.is_loopback:
        return policy == AddressPolicy.PUBLIC
    if address.is_global:
        return False
    return policy != AddressPolicy.ANY or address.is_multicast or address.is_unspecified


def address_problem(
    host: str,
    policy: AddressPolicy,
    *,
    resolve: Callable[[str], Sequence[str]] | None = None,
) -> str | None:
    """Why deliveries to ``host`` are refused under ``policy``, or None. A name is resolved
    (``resolve``: every address it has; the default asks the system) and refused if any of its
    addresses is; ``resolve=None`` and a name that is not ``localhost`` check only literals."""
    try:
        addresses: Sequence[str] = [str(ipaddress.ip_address(host))]
    except ValueError:
        if host.lower().rstrip(".") in ("localhost", "localhost.localdomain"):
            addresses = ["127.0.0.1"]
        elif resolve is None:
            return None
        else:
            try:
                addresses = resolve(host)
            except (OSError, UnicodeError) as error:  # UnicodeError: a name IDNA refuses
                return f"{host} does not resolve: {error}"
    for text in addresses:
        address = ipaddress.ip_address(text)
        if _refused(address, policy):
            kind = "a loopback" if address.is_loopback else "a non-public"
            return (
                f"{host} is {text}, {kind} address; this service delivers to {policy} addresses "
                "only (WEBHOOK_ALLOWED_ADDRESSES)"
            )
    return None


def system_resolve(host: str) -> list[str]:
    return sorted({str(info[4][0]).split("%")[0] for info in socket.getaddrinfo(host, None)})


# --- signing ----------------------------------------------------------------------------------


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """The ``Ganforge-Signature`` header of ``body`` sent at ``timestamp``."""
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={digest.hexdigest()}"


def verify(
    secret: str, header: str, body: bytes, *, tolerance_s: float = SIGNATURE_TOLERANCE_S
) -> bool:
    """A receiver's check: the header signs ``body`` with ``secret`` and is recent."""
    fields = dict(part.split("=", 1) for part in header.split(",") if "=" in part)
    try:
        timestamp = int(fields["t"])
    except (KeyError, ValueError):
        return False
    if abs(time.time() - timestamp) > tolerance_s:
        return False
    expected = signature(secret, timestamp, body).split("v1=", 1)[1]
    return hmac.compare_digest(expected, fields.get("v1", ""))


def body_bytes(payload: Mapping[str, Any]) -> bytes:
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()


# --- notifying ----------------------------------------------------------------------------------

_JOB_FIELDS: Final = (Job.id, Job.status, Job.phase, Job.name, Job.tags, Job.metadata_, Job.step,
                      Job.total_steps, Job.images_per_s, Job.eta_s, Job.error_code,
                      Job.error_message, Job.model_id, Job.summary_metrics, Job.created_at,
                      Job.started_at, Job.finished_at)  # fmt: skip


def _json_value(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


def job_snapshot(session: Session, job_id: str) -> dict[str, Any] | None:
    """The job as a delivery reports it (a subset of ``GET /v1/jobs/{id}``)."""
    row = session.execute(select(*_JOB_FIELDS).where(Job.id == job_id)).one_or_none()
    if row is None:
        return None
    values = {c.key: _json_value(value) for c, value in zip(_JOB_FIELDS, row, strict=True)}
    values["metadata"] = values.pop("metadata_")
    return values


def event_snapshot(job_event: JobEvent) -> dict[str, Any]:
    return {"seq": job_event.seq, "step": job_event.step, "level": job_event.level,
            "code": job_event.code, "message": job_event.message,
            "created_at": _json_value(job_event.created_at)}  # fmt: skip


def subscribes(config: Mapping[str, Any] | None, event: WebhookEvent) -> bool:
    return bool(config) and str(event) in config.get("events", ())  # type: ignore[union-attr]


def notify(
    session: Session,
    *,
    job_id: str,
    event: WebhookEvent,
    config: Mapping[str, Any] | None,
    job_event: JobEvent | None = None,
) -> str | None:
    """Record a delivery of ``event`` if the job's webhook (``config``) asks for it; it is sent
    once this session commits. Returns its id."""
    if not subscribes(config, event):
        return None
    assert config is not None
    job = job_snapshot(session, job_id)
    if job is None:
        return None
    now = utcnow()
    delivery_id = new_id("whd")
    payload = {
        "id": delivery_id,
        "type": f"job.{event}",
        "created_at": now.isoformat(),
        "job": job,
        "event": event_snapshot(job_event) if job_event is not None else None,
    }
    session.add(
        WebhookDelivery(
            id=delivery_id,
            job_id=job_id,
            event=event,
            url=config["url"],
            payload=payload,
            status=DeliveryStatus.PENDING,
            attempts=[],
            next_attempt_at=now,
            created_at=now,
        )
    )
    session.flush()
    session.info.setdefault(_PENDING_KEY, []).append(delivery_id)
    return delivery_id


def progress_due(
    session: Session, *, job_id: str, config: Mapping[str, Any] | None, interval_s: float
) -> bool:
    """A progress delivery is wanted and the last one is at least ``interval_s`` old."""
    if not subscribes(config, WebhookEvent.PROGRESS):
        return False
    last = session.scalar(
        select(func.max(WebhookDelivery.created_at)).where(
            WebhookDelivery.job_id == job_id, WebhookDelivery.event == WebhookEvent.PROGRESS
        )
    )
    if last is None:
        return True
    if last.tzinfo is None:  # SQLite's max() returns the stored text's naive value
        last = last.replace(tzinfo=utcnow().tzinfo)
    return bool(utcnow() - last >= timedelta(seconds=interval_s))


def webhook_of(session: Session, job_id: str) -> dict[str, Any] | None:
    return session.scalar(select(Job.webhook).where(Job.id == job_id))


# --- after the commit: to the queue --------------------------------------------------------------


def _send(delivery_ids: list[str]) -> None:
    from store.queue import enqueue_webhook

    for delivery_id in delivery_ids:
        try:
            enqueue_webhook(delivery_id)
        except Exception:  # the delivery stays pending; the reaper sends it again
            log.warning("could not enqueue webhook delivery %s", delivery_id, exc_info=True)


# What runs a committed session's new deliveries (tests replace it to deliver in-process).
send_committed: Callable[[list[str]], None] = _send


@orm_event.listens_for(Session, "after_commit")
def _after_commit(session: Session) -> None:
    delivery_ids = session.info.pop(_PENDING_KEY, None)
    if delivery_ids:
        send_committed(delivery_ids)


@orm_event.listens_for(Session, "after_soft_rollback")
def _after_rollback(session: Session, previous_transaction: Any) -> None:
    session.info.pop(_PENDING_KEY, None)


def stale_deliveries(session: Session, *, older_than_s: float, limit: int = 100) -> list[str]:
    """Pending deliveries whose try was due ``older_than_s`` ago and has not happened: their
    message was lost (the reaper sends them again)."""
    due = utcnow() - timedelta(seconds=older_than_s)
    return list(
        session.scalars(
            select(WebhookDelivery.id)
            .where(
                WebhookDelivery.status == DeliveryStatus.PENDING,
                WebhookDelivery.next_attempt_at < due,
            )
            .order_by(WebhookDelivery.next_attempt_at)
            .limit(limit)
        )
    )
