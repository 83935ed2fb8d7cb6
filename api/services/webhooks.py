"""Webhooks on the API's side: an account's default webhook, the check of a submitted one, and a
job's deliveries, oldest first (``store.webhooks`` records them, ``worker.webhooks`` delivers
them)."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import select, tuple_, update
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.orm import Session

from api.schemas import WebhookIn
from api.services.tenancy import get_owned
from store.errors import InvalidRequest, NotFound
from store.models import Job, Tenant, WebhookDelivery
from store.settings import Settings
from store.webhooks import address_problem


def checked_webhook(
    webhook: WebhookIn | None, settings: Settings, *, param: str = "webhook.url"
) -> dict[str, Any] | None:
    """The webhook as stored, if this service may deliver to its host (an address given as a
    literal or ``localhost`` is checked now; a name is resolved and checked at each try)."""
    if webhook is None:
        return None
    host = urlsplit(webhook.url).hostname or ""
    problem = address_problem(host, settings.webhook_allowed_addresses)
    if problem:
        raise InvalidRequest(problem, code="webhook_address_refused", param=param)
    return webhook.model_dump(mode="json")


def default_webhook(session: Session, *, tenant_id: str) -> dict[str, Any]:
    found = session.scalar(select(Tenant.webhook).where(Tenant.id == tenant_id))
    if not found:
        raise NotFound("this account has no default webhook; PUT /v1/webhook sets one")
    return found


def set_default_webhook(
    session: Session, *, tenant_id: str, webhook: WebhookIn | None, settings: Settings | None = None
) -> dict[str, Any] | None:
    stored = None
    if webhook is not None and settings is not None:
        stored = checked_webhook(webhook, settings, param="url")
    session.execute(update(Tenant).where(Tenant.id == tenant_id).values(webhook=stored))
    session.commit()
    return stored


async def submission_webhook(
    connection: AsyncConnection, *, tenant_id: str, webhook: WebhookIn | None, settings: Settings
) -> dict[str, Any] | None:
    """A submission's webhook: its own, else the account's default."""
    if webhook is not None:
        return checked_webhook(webhook, settings)
    found = await connection.execute(select(Tenant.webhook).where(Tenant.id == tenant_id))
    return found.scalar()  # type: ignore[no-any-return]


def list_deliveries(
    session: Session, *, tenant_id: str, job_id: str, after: str | None, limit: int
) -> tuple[list[WebhookDelivery], bool]:
    """One page of the job's deliveries, oldest first, after the delivery ``after``."""
    get_owned(session, Job, object_id=job_id, tenant_id=tenant_id)
    query = select(WebhookDelivery).where(WebhookDelivery.job_id == job_id)
    if after is not None:
        cursor = session.execute(
            select(WebhookDelivery.created_at, WebhookDelivery.id).where(
                WebhookDelivery.id == after, WebhookDelivery.job_id == job_id
            )
        ).one_or_none()
        if cursor is None:
            raise InvalidRequest(
                f"'after' must be the id of a delivery of this job: {after[:80]!r}", param="after"
            )
        query = query.where(
            tuple_(WebhookDelivery.created_at, WebhookDelivery.id) > tuple_(cursor[0], cursor[1])
        )
    order = (WebhookDelivery.created_at, WebhookDelivery.id)
    rows = list(session.scalars(query.order_by(*order).limit(limit + 1)))
    return rows[:limit], len(rows) > limit
