"""Initial schema: requests, their datasets and decisions, the audit chain.

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from sluicegate.store.schema import UTCDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "requests",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("idempotency_key", sa.String(512), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("rule", sa.String(128)),
        sa.Column("required_approvals", sa.Integer, nullable=False),
        sa.Column("required_denials", sa.Integer, nullable=False),
        sa.Column("groups", sa.Text, nullable=False),
        sa.Column("comment_on_deny", sa.Boolean, nullable=False),
        sa.Column("on_timeout", sa.String(8), nullable=False),
        sa.Column("fingerprint", sa.String(80), nullable=False),
        sa.Column("action", sa.Text, nullable=False),
        sa.Column("requester", sa.Text, nullable=False),
        sa.Column("orchestrator", sa.String(64), nullable=False),
        sa.Column("job", sa.String(512), nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("expires_at", UTCDateTime),
        sa.Column("decided_at", UTCDateTime),
        sa.Column("lineage_run_id", sa.String(36), nullable=False),
        sa.Column("policy_digest", sa.String(80)),
        sa.Column("version", sa.Integer, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_requests"),
        sa.UniqueConstraint("idempotency_key", name="uq_requests_idempotency_key"),
    )
    op.create_index("ix_requests_status", "requests", ["status"])
    op.create_index("ix_requests_job", "requests", ["job"])
    op.create_index("ix_requests_expires_at", "requests", ["expires_at"])

    op.create_table(
        "request_datasets",
        sa.Column("request_id", sa.String(36), nullable=False),
        sa.Column("role", sa.String(8), nullable=False),
        sa.Column("namespace", sa.String(1024), nullable=False),
        sa.Column("name", sa.String(1024), nullable=False),
        sa.ForeignKeyConstraint(
            ["request_id"],
            ["requests.id"],
            ondelete="CASCADE",
            name="fk_request_datasets_request_id_requests",
        ),
    )
    op.create_index("ix_request_datasets_name", "request_datasets", ["name"])
    op.create_index("ix_request_datasets_request_id", "request_datasets", ["request_id"])

    op.create_table(
        "decisions",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("request_id", sa.String(36), nullable=False),
        sa.Column("reviewer", sa.String(256), nullable=False),
        sa.Column("verdict", sa.String(8), nullable=False),
        sa.Column("comment", sa.Text, nullable=False),
        sa.Column("channel", sa.String(16), nullable=False),
        sa.Column("fingerprint", sa.String(80), nullable=False),
        sa.Column("decided_at", UTCDateTime, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_decisions"),
        sa.ForeignKeyConstraint(
            ["request_id"],
            ["requests.id"],
            ondelete="CASCADE",
            name="fk_decisions_request_id_requests",
        ),
        sa.UniqueConstraint("request_id", "reviewer", name="uq_decisions_request_id_reviewer"),
    )

    op.create_table(
        "audit_events",
        sa.Column("seq", sa.BigInteger, autoincrement=False, nullable=False),
        sa.Column("ts", sa.String(32), nullable=False),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("request_id", sa.String(36)),
        sa.Column("actor", sa.String(256)),
        sa.Column("job", sa.String(512)),
        sa.Column("datasets", sa.Text, nullable=False),
        sa.Column("data", sa.Text, nullable=False),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("seq", name="pk_audit_events"),
    )
    op.create_index("ix_audit_events_ts", "audit_events", ["ts"])
    op.create_index("ix_audit_events_request_id", "audit_events", ["request_id"])
    op.create_index("ix_audit_events_actor", "audit_events", ["actor"])
    op.create_index("ix_audit_events_job", "audit_events", ["job"])

    op.create_table(
        "audit_head",
        sa.Column("id", sa.Integer, autoincrement=False, nullable=False),
        sa.Column("seq", sa.BigInteger, nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_audit_head"),
    )
    op.execute("INSERT INTO audit_head (id, seq, hash) VALUES (1, 0, '" + "0" * 64 + "')")


def downgrade() -> None:
    for table in ("audit_head", "audit_events", "decisions", "request_datasets", "requests"):
        op.drop_table(table)
