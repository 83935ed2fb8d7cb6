"""Bounded request parameters, declared once: every integer in a query, path or header has an
upper bound the database can hold, every string a length, and ids a shape.

A value out of bounds is a 422 naming the parameter before any query runs (a 20-digit cursor
would otherwise overflow PostgreSQL's integer and surface as a 500).
"""

from __future__ import annotations

import re
from typing import Annotated

from fastapi import Path, Query
from pydantic import StringConstraints

from store.labels import MAX_TAG_CHARS, MAX_TAGS, TAG_PATTERN

MAX_INT32 = 2**31 - 1  # steps and event seqs are 32-bit integer columns
MAX_WAIT_S = 60  # a long poll's longest wait (GET /v1/jobs/{id}?wait=)
ID_PATTERN = r"^[a-z]{1,8}_[A-Za-z0-9_-]{1,64}$"
MAX_ID_CHARS = 80
MAX_METRIC_NAMES = 50
MAX_METRIC_NAME_CHARS = 64
METRIC_NAME_PATTERN = r"^[A-Za-z0-9_.:-]+$"
LAST_EVENT_ID = re.compile(r"[0-9]{1,10}")
# Header values we store (Idempotency-Key): visible ASCII only, so no NUL or control byte can
# reach the database.
PRINTABLE_ASCII = re.compile(r"[\x21-\x7e]+")

DEFAULT_LIMIT, MAX_LIMIT = 20, 100
Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT, description="page size")]
Cursor = Annotated[
    int | None,
    Query(ge=0, le=MAX_INT32, description="the seq or step of the last item seen"),
]
AfterId = Annotated[
    str | None,
    Query(max_length=MAX_ID_CHARS, description="the id of the previous page's last item"),
]
Step = Annotated[int, Path(ge=0, le=MAX_INT32, description="a training step")]
JobId = Annotated[
    str, Path(max_length=MAX_ID_CHARS, pattern=ID_PATTERN, description="a job id (job_...)")
]
ModelId = Annotated[
    str, Path(max_length=MAX_ID_CHARS, pattern=ID_PATTERN, description="a model id (mdl_...)")
]
DatasetId = Annotated[
    str, Path(max_length=MAX_ID_CHARS, pattern=ID_PATTERN, description="a dataset id (ds_...)")
]
MetricNames = Annotated[
    list[
        Annotated[
            str,
            StringConstraints(max_length=MAX_METRIC_NAME_CHARS, pattern=METRIC_NAME_PATTERN),
        ]
    ]
    | None,
    Query(
        max_length=MAX_METRIC_NAMES,
        description="metric names (repeat the parameter); all when omitted",
    ),
]
TagFilter = Annotated[
    list[Annotated[str, StringConstraints(max_length=MAX_TAG_CHARS, pattern=TAG_PATTERN)]] | None,
    Query(
        alias="tag",
        max_length=MAX_TAGS,
        description="only objects carrying this tag (repeat the parameter: every one of them)",
    ),
]
