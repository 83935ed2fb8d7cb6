"""Objects of an account: one way to get one and one way to list them, for every kind.

Datasets, jobs and models each belong to a tenant; another tenant's object is ``NotFound``, the
same answer as a missing one. Lists are newest first, keyset-paginated on ``(created_at, id)`` so
pages stay stable while rows are added; ``after`` is the id of the previous page's last object.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar

from sqlalchemy import select, tuple_
from sqlalchemy.orm import Session

from store.errors import InvalidRequest, NotFound
from store.models import Dataset, Job, TrainedModel

Owned = TypeVar("Owned", Dataset, Job, TrainedModel)

NOUNS: dict[type[Any], str] = {Dataset: "dataset", Job: "job", TrainedModel: "model"}


def get_owned(session: Session, kind: type[Owned], *, object_id: str, tenant_id: str) -> Owned:
    """The tenant's object, fresh from the database (``populate_existing``)."""
    row = session.scalar(
        select(kind)
        .where(kind.id == object_id, kind.tenant_id == tenant_id)
        .execution_options(populate_existing=True)
    )
    if row is None:
        raise NotFound(f"{NOUNS[kind]} {object_id} not found")
    return row


def list_owned(
    session: Session,
    kind: type[Owned],
    *,
    tenant_id: str,
    after: str | None,
    limit: int,
    where: Sequence[Any] = (),
) -> tuple[list[Owned], bool]:
    """One page of the tenant's objects matching ``where``, newest first, after ``after``."""
    scope = [kind.tenant_id == tenant_id]
    query = select(kind).where(*scope, *where)
    if after is not None:
        cursor = session.execute(
            select(kind.created_at, kind.id).where(kind.id == after, *scope)
        ).one_or_none()
        if cursor is None:
            raise InvalidRequest(
                f"'after' must be the id of an object of this list: {after[:80]!r}", param="after"
            )
        query = query.where(tuple_(kind.created_at, kind.id) < tuple_(cursor[0], cursor[1]))
    rows = list(
        session.scalars(query.order_by(kind.created_at.desc(), kind.id.desc()).limit(limit + 1))
    )
    return rows[:limit], len(rows) > limit
