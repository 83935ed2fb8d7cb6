"""A user's words on their jobs, models and datasets: a name, tags to filter lists by, and a small
metadata dict (Stripe's shape). The limits live here; ``has_tag`` filters a tags column on
PostgreSQL and SQLite alike."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from sqlalchemy import ColumnElement, cast, exists, func, literal, select
from sqlalchemy.dialects.postgresql import JSONB

MAX_NAME_CHARS: Final = 200
MAX_TAGS: Final = 20
MAX_TAG_CHARS: Final = 64
TAG_PATTERN: Final = r"^[A-Za-z0-9][A-Za-z0-9_.:/-]*$"  # printable, no spaces or commas
MAX_METADATA_KEYS: Final = 16
MAX_METADATA_KEY_CHARS: Final = 40
MAX_METADATA_VALUE_CHARS: Final = 500


@dataclass(frozen=True)
class Labels:
    """What a user calls an object (``store.labels`` has the limits, which the API checks)."""

    name: str | None = None
    tags: Sequence[str] = ()
    metadata: Mapping[str, str] = field(default_factory=dict)


def has_tag(column: Any, tag: str, *, dialect: str) -> ColumnElement[bool]:
    """``tag`` is an element of the JSON array in ``column`` (JSONB containment on PostgreSQL,
    which a GIN index serves; ``json_each`` on SQLite)."""
    if dialect == "postgresql":
        return column.op("@>")(cast(literal(json.dumps([tag])), JSONB))  # type: ignore[no-any-return]
    elements = func.json_each(column).table_valued("value")
    return exists(select(1).select_from(elements).where(elements.c.value == tag))
