"""Lineage: received OpenLineage events, the dataset graph, classifications on requests.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from sluicegate.store.schema import UTCDateTime

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_SERIAL = sa.BigInteger().with_variant(sa.Integer, "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("requests") as batch:
        batch.add_column(sa.Column("classifications", sa.Text, nullable=False, server_default="{}"))
    op.create_table(
        "lineage_events",
        sa.Column("id", _SERIAL, autoincrement=True, nullable=False),
        sa.Column("received_at", UTCDateTime, nullable=False),
        sa.Column("event_kind", sa.String(16), nullable=False),
        sa.Column("event_type", sa.String(16)),
        sa.Column("event_time", sa.String(64), nullable=False),
        sa.Column("run_id", sa.String(36)),
        sa.Column("job_namespace", sa.String(1024)),
        sa.Column("job_name", sa.String(1024)),
        sa.Column("producer", sa.Text, nullable=False),
        sa.Column("body", sa.Text, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_lineage_events"),
    )
    op.create_index("ix_lineage_events_run_id", "lineage_events", ["run_id"])
    op.create_table(
        "lineage_edges",
        sa.Column("id", _SERIAL, autoincrement=True, nullable=False),
        sa.Column("edge_key", sa.String(64), nullable=False),
        sa.Column("job_namespace", sa.String(1024), nullable=False),
        sa.Column("job_name", sa.String(1024), nullable=False),
        sa.Column("src_namespace", sa.String(1024), nullable=False),
        sa.Column("src_name", sa.String(1024), nullable=False),
        sa.Column("dst_namespace", sa.String(1024), nullable=False),
        sa.Column("dst_name", sa.String(1024), nullable=False),
        sa.Column("first_seen", UTCDateTime, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_lineage_edges"),
        sa.UniqueConstraint("edge_key", name="uq_lineage_edges_edge_key"),
    )
    op.create_table(
        "lineage_tags",
        sa.Column("id", _SERIAL, autoincrement=True, nullable=False),
        sa.Column("tag_key", sa.String(64), nullable=False),
        sa.Column("namespace", sa.String(1024), nullable=False),
        sa.Column("name", sa.String(1024), nullable=False),
        sa.Column("classification", sa.String(64), nullable=False),
        sa.Column("source", sa.String(512), nullable=False),
        sa.Column("first_seen", UTCDateTime, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_lineage_tags"),
        sa.UniqueConstraint("tag_key", name="uq_lineage_tags_tag_key"),
    )


def downgrade() -> None:
    for table in ("lineage_tags", "lineage_edges", "lineage_events"):
        op.drop_table(table)
    with op.batch_alter_table("requests") as batch:
        batch.drop_column("classifications")
