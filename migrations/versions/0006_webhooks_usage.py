"""webhooks (deliveries, a job's, a tenant's default) and usage (sizes, worker time)

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
TIMESTAMP = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("tenants") as batch:
        batch.add_column(sa.Column("webhook", JSON, nullable=True))
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("webhook", JSON, nullable=True))
        batch.add_column(sa.Column("running_since", TIMESTAMP, nullable=True))
        batch.add_column(sa.Column("run_seconds", sa.Float, nullable=False, server_default="0"))
    for table in ("samples", "checkpoints", "models"):
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("size_bytes", sa.BigInteger, nullable=True))
    op.create_table(
        "webhook_deliveries",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column(
            "job_id", sa.String(40), sa.ForeignKey("jobs.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("event", sa.String(16), nullable=False),
        sa.Column("url", sa.Text, nullable=False),
        sa.Column("payload", JSON, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", JSON, nullable=False),
        sa.Column("next_attempt_at", TIMESTAMP, nullable=True),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("delivered_at", TIMESTAMP, nullable=True),
        sa.CheckConstraint(
            "event IN ('started', 'progress', 'warning', 'completed')",
            name="ck_webhook_deliveries_event",
        ),
        sa.CheckConstraint(
            "status IN ('pending', 'delivered', 'failed')", name="ck_webhook_deliveries_status"
        ),
    )
    op.create_index(
        "ix_webhook_deliveries_job_created", "webhook_deliveries", ["job_id", "created_at"]
    )
    op.create_index(
        "ix_webhook_deliveries_status_next", "webhook_deliveries", ["status", "next_attempt_at"]
    )


def downgrade() -> None:
    op.drop_table("webhook_deliveries")
    for table in ("samples", "checkpoints", "models"):
        with op.batch_alter_table(table) as batch:
            batch.drop_column("size_bytes")
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("run_seconds")
        batch.drop_column("running_since")
        batch.drop_column("webhook")
    with op.batch_alter_table("tenants") as batch:
        batch.drop_column("webhook")
