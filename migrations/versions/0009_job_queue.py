"""jobs.queue: the training queue a job is routed to (store.queue.train_queue of its spec), and
the indexes of the fair claim (store.jobs.claim_next)

Jobs stored before this revision get the legacy queue ``train``, which every worker consumes, as
every worker consumed it before: their messages (already on ``train``) still find them.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("queue", sa.String(64), nullable=False, server_default="train"))
    op.create_index("ix_jobs_queue_status_created", "jobs", ["queue", "status", "created_at"])
    op.create_index("ix_jobs_queue_tenant_status", "jobs", ["queue", "tenant_id", "status"])


def downgrade() -> None:
    op.drop_index("ix_jobs_queue_tenant_status", table_name="jobs")
    op.drop_index("ix_jobs_queue_status_created", table_name="jobs")
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("queue")
