"""A job's webhook deliveries, oldest first (``store.webhooks`` records them, ``worker.webhooks``
delivers them)."""

from __future__ import annotations

from sqlalchemy import select, tuple_
from sqlalchemy.orm import Session

from api.services.tenancy import get_owned
from store.errors import InvalidRequest
from store.models import Job, WebhookDelivery


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
