"""name, tags and metadata on jobs, models and datasets (datasets already have a name)

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    for table in ("jobs", "models", "datasets"):
        with op.batch_alter_table(table) as batch:
            if table != "datasets":
                batch.add_column(sa.Column("name", sa.String(200), nullable=True))
            batch.add_column(sa.Column("tags", JSON, nullable=False, server_default="[]"))
            batch.add_column(sa.Column("metadata", JSON, nullable=False, server_default="{}"))


def downgrade() -> None:
    for table in ("jobs", "models", "datasets"):
        with op.batch_alter_table(table) as batch:
            batch.drop_column("metadata")
            batch.drop_column("tags")
            if table != "datasets":
                batch.drop_column("name")
