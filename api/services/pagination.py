"""Cursor pagination of a job's logs: ``?limit=&after=`` → ``{"data": [...], "has_more": bool}``.

Events, samples and checkpoints are listed oldest first; ``after`` is a seq or a step. (Objects of
an account, newest first, are paged by ``api.services.tenancy.list_owned``.)
"""

from __future__ import annotations

from typing import Any, TypeVar

from sqlalchemy import Select
from sqlalchemy.orm import InstrumentedAttribute, Session

T = TypeVar("T")


def ascending_page(
    session: Session,
    query: Select[tuple[T]],
    *,
    key: InstrumentedAttribute[Any],
    after: int | None,
    limit: int,
) -> tuple[list[T], bool]:
    """One page ordered by an integer ``key`` (an event's seq, a step), after ``after``."""
    if after is not None:
        query = query.where(key > after)
    rows = list(session.scalars(query.order_by(key).limit(limit + 1)))
    return rows[:limit], len(rows) > limit
