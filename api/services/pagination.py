"""Cursor pagination: ``?limit=&after=`` → ``{"data": [...], "has_more": bool}``.

Objects (datasets, jobs, models) are listed newest first; ``after`` is the id of the last object of
the previous page. Keyset on ``(created_at, id)``, so pages stay stable while rows are added.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any, TypeVar

from fastapi import Query
from sqlalchemy import Select, select, tuple_
from sqlalchemy.orm import InstrumentedAttribute, Session

from store.errors import InvalidRequest

T = TypeVar("T")

DEFAULT_LIMIT, MAX_LIMIT = 20, 100

Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT, description="page size")]


def newest_first_page(
    session: Session,
    query: Select[tuple[T]],
    *,
    created_at: InstrumentedAttribute[Any],
    id_column: InstrumentedAttribute[str],
    scope: Sequence[Any],
    after: str | None,
    limit: int,
) -> tuple[list[T], bool]:
    """One page of ``query`` (already filtered by ``scope``, the tenant condition, and any
    filter), newest first, starting after the object ``after`` (which must lie in ``scope``)."""
    if after is not None:
        cursor = session.execute(
            select(created_at, id_column).where(id_column == after, *scope)
        ).one_or_none()
        if cursor is None:
            raise InvalidRequest(
                f"'after' must be the id of an object of this list: {after[:64]!r}", param="after"
            )
        query = query.where(tuple_(created_at, id_column) < tuple_(cursor[0], cursor[1]))
    rows = list(
        session.scalars(query.order_by(created_at.desc(), id_column.desc()).limit(limit + 1))
    )
    return rows[:limit], len(rows) > limit


def ascending_page(
    session: Session,
    query: Select[tuple[T]],
    *,
    key: InstrumentedAttribute[int],
    after: int | None,
    limit: int,
) -> tuple[list[T], bool]:
    """One page ordered by an integer ``key`` (an event's seq, a step), after ``after``."""
    if after is not None:
        query = query.where(key > after)
    rows = list(session.scalars(query.order_by(key).limit(limit + 1)))
    return rows[:limit], len(rows) > limit
