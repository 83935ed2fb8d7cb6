"""Objects of an account: one way to get one and one way to list them, for every kind.

Datasets, jobs and models each belong to a tenant; another tenant's object is ``NotFound``, the
same answer as a missing one. Lists are newest first, keyset-paginated on ``(created_at, id)`` so
pages stay stable while rows are added; ``after`` is the id of the previous page's last object.
Each can be filtered by its tags and relabelled (name, tags, metadata).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

from sqlalchemy import select, tuple_
from sqlalchemy.orm import Session

from api.schemas import LabelsPatch
from store.errors import InvalidRequest, NotFound
from store.labels import MAX_METADATA_KEYS, has_tag
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
    tags: Sequence[str] = (),
) -> tuple[list[Owned], bool]:
    """One page of the tenant's objects matching ``where`` and carrying every one of ``tags``,
    newest first, after ``after``."""
    scope = [kind.tenant_id == tenant_id]
    dialect = session.get_bind().dialect.name
    tagged = [has_tag(kind.tags, tag, dialect=dialect) for tag in tags]
    query = select(kind).where(*scope, *where, *tagged)
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


def relabel(
    session: Session,
    kind: type[Owned],
    *,
    object_id: str,
    tenant_id: str,
    name: str | None,
    name_given: bool,
    tags: Sequence[str] | None,
    metadata: Mapping[str, str | None] | None,
) -> Owned:
    """Change an object's name (when ``name_given``; None clears it), replace its tags, and
    merge ``metadata`` into its own (a None value removes its key); committed. More than
    ``MAX_METADATA_KEYS`` keys after the merge is ``InvalidRequest``."""
    row = get_owned(session, kind, object_id=object_id, tenant_id=tenant_id)
    if name_given:
        if name is None and kind is Dataset:
            raise InvalidRequest("a dataset always has a name", param="name")
        row.name = name  # type: ignore[assignment]
    if tags is not None:
        row.tags = list(tags)
    if metadata is not None:
        merged = {**row.metadata_, **metadata}
        merged = {key: value for key, value in merged.items() if value is not None}
        if len(merged) > MAX_METADATA_KEYS:
            raise InvalidRequest(
                f"metadata holds at most {MAX_METADATA_KEYS} keys; this change makes {len(merged)}",
                param="metadata",
            )
        row.metadata_ = merged
    session.commit()
    return get_owned(session, kind, object_id=object_id, tenant_id=tenant_id)


def relabel_from(
    patch: LabelsPatch, session: Session, kind: type[Owned], *, object_id: str, tenant_id: str
) -> Owned:
    """``relabel`` with a ``PATCH`` body."""
    return relabel(
        session, kind, object_id=object_id, tenant_id=tenant_id, name=patch.name,
        name_given="name" in patch.model_fields_set, tags=patch.tags, metadata=patch.metadata,
    )  # fmt: skip
