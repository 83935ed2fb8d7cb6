"""initial schema: tenants, api keys, datasets, jobs and their events/metrics/samples/checkpoints,
models

Revision ID: 0001
Revises:
Create Date: 2025-01-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
BIGINT_PK = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def ts(name: str, nullable: bool = False) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def job_fk() -> sa.Column:
    return sa.Column(
        "job_id", sa.String(40), sa.ForeignKey("jobs.id", ondelete="CASCADE"), nullable=False
    )


def tenant_fk() -> sa.Column:
    return sa.Column(
        "tenant_id", sa.String(40), sa.ForeignKey("tenants.id", ondelete="CASCADE"), nullable=False
    )


def upgrade() -> None:
    op.create_table(
        "tenants",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        ts("created_at"),
    )
    op.create_table(
        "api_keys",
        sa.Column("id", sa.String(40), primary_key=True),
        tenant_fk(),
        sa.Column("name", sa.String(200), nullable=True),
        sa.Column("prefix", sa.String(16), nullable=False),
        sa.Column("key_hash", sa.String(64), nullable=False),
        ts("created_at"),
        ts("revoked_at", nullable=True),
    )
    op.create_index("ix_api_keys_tenant_id", "api_keys", ["tenant_id"])
    op.create_index("ix_api_keys_key_hash", "api_keys", ["key_hash"], unique=True)

    op.create_table(
        "datasets",
        sa.Column("id", sa.String(40), primary_key=True),
        tenant_fk(),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("storage_key", sa.String(500), nullable=False),
        sa.Column("n_images", sa.Integer(), nullable=False),
        sa.Column("image_shape", JSON, nullable=False),
        sa.Column("class_names", JSON, nullable=True),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        ts("created_at"),
    )
    op.create_index("ix_datasets_tenant_created", "datasets", ["tenant_id", "created_at"])

    op.create_table(
        "jobs",
        sa.Column("id", sa.String(40), primary_key=True),
        tenant_fk(),
        sa.Column("spec", JSON, nullable=False),
        sa.Column("dataset_id", sa.String(40), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("step", sa.Integer(), nullable=False),
        sa.Column("total_steps", sa.Integer(), nullable=False),
        sa.Column("images_per_s", sa.Float(), nullable=True),
        sa.Column("error_code", sa.String(64), nullable=True),
        sa.Column("error_message", sa.Text(), nullable=True),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("worker_id", sa.String(200), nullable=True),
        ts("lease_expires_at", nullable=True),
        sa.Column("cancel_requested", sa.Boolean(), nullable=False),
        sa.Column("idempotency_key", sa.String(255), nullable=True),
        sa.Column("model_id", sa.String(40), nullable=True),
        sa.Column("latest_metrics", JSON, nullable=False),
        sa.Column("summary_metrics", JSON, nullable=True),
        sa.Column("event_seq", sa.Integer(), nullable=False),
        ts("created_at"),
        ts("enqueued_at"),
        ts("started_at", nullable=True),
        ts("finished_at", nullable=True),
        ts("updated_at"),
        sa.UniqueConstraint("tenant_id", "idempotency_key", name="uq_jobs_tenant_idempotency_key"),
        sa.CheckConstraint(
            "status IN ('queued', 'running', 'succeeded', 'failed', 'cancelled', 'interrupted')",
            name="ck_jobs_status",
        ),
    )
    op.create_index("ix_jobs_tenant_created", "jobs", ["tenant_id", "created_at"])
    op.create_index("ix_jobs_tenant_status", "jobs", ["tenant_id", "status"])
    op.create_index("ix_jobs_status_lease", "jobs", ["status", "lease_expires_at"])
    op.create_index("ix_jobs_status_enqueued", "jobs", ["status", "enqueued_at"])
    op.create_index("ix_jobs_dataset_id", "jobs", ["dataset_id"])

    op.create_table(
        "job_events",
        sa.Column("id", BIGINT_PK, primary_key=True, autoincrement=True),
        job_fk(),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("step", sa.Integer(), nullable=True),
        sa.Column("level", sa.String(16), nullable=False),
        sa.Column("code", sa.String(64), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        ts("created_at"),
        sa.UniqueConstraint("job_id", "seq", name="uq_job_events_job_seq"),
        sa.CheckConstraint("level IN ('info', 'warning', 'error')", name="ck_job_events_level"),
    )
    op.create_table(
        "metrics",
        sa.Column("id", BIGINT_PK, primary_key=True, autoincrement=True),
        job_fk(),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("step", sa.Integer(), nullable=False),
        sa.Column("value", sa.Float(), nullable=True),
        sa.UniqueConstraint("job_id", "name", "step", name="uq_metrics_job_name_step"),
    )
    op.create_table(
        "samples",
        sa.Column("id", BIGINT_PK, primary_key=True, autoincrement=True),
        job_fk(),
        sa.Column("step", sa.Integer(), nullable=False),
        sa.Column("storage_key", sa.String(500), nullable=False),
        ts("created_at"),
        sa.UniqueConstraint("job_id", "step", name="uq_samples_job_step"),
    )
    op.create_table(
        "checkpoints",
        sa.Column("id", BIGINT_PK, primary_key=True, autoincrement=True),
        job_fk(),
        sa.Column("step", sa.Integer(), nullable=False),
        sa.Column("storage_key", sa.String(500), nullable=False),
        sa.Column("metrics", JSON, nullable=True),
        ts("created_at"),
        sa.UniqueConstraint("job_id", "step", name="uq_checkpoints_job_step"),
    )
    op.create_table(
        "models",
        sa.Column("id", sa.String(40), primary_key=True),
        tenant_fk(),
        sa.Column(
            "job_id",
            sa.String(40),
            sa.ForeignKey("jobs.id", ondelete="CASCADE"),
            nullable=False,
            unique=True,
        ),
        sa.Column("spec", JSON, nullable=False),
        sa.Column("class_names", JSON, nullable=True),
        sa.Column("image_shape", JSON, nullable=False),
        sa.Column("summary_metrics", JSON, nullable=True),
        sa.Column("storage_prefix", sa.String(500), nullable=False),
        ts("created_at"),
    )
    op.create_index("ix_models_tenant_created", "models", ["tenant_id", "created_at"])


def downgrade() -> None:
    for table in ("models", "checkpoints", "samples", "metrics", "job_events", "jobs"):
        op.drop_table(table)
    op.drop_table("datasets")
    op.drop_table("api_keys")
    op.drop_table("tenants")
