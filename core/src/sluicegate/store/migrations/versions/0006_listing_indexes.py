"""Indexes that serve every listing in id order (the inbox, the API's and the CLI's lists).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-07

Listings are newest first and paged by id (``before=<id>``). With an index on ``status``
alone, a page of pending requests sorted every pending row (a temporary B-tree on SQLite,
153 ms at 50,000 pending); an index whose last column is ``id`` hands the page over as a range
read. The single-column indexes on ``status``, ``job`` and ``request_datasets.name`` are
prefixes of the new ones, so they are dropped.
"""

from __future__ import annotations

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_requests_status_id", "requests", ["status", "id"])
    op.create_index("ix_requests_job_id", "requests", ["job", "id"])
    op.create_index("ix_requests_job_status_id", "requests", ["job", "status", "id"])
    op.create_index(
        "ix_request_datasets_name_request_id", "request_datasets", ["name", "request_id"]
    )
    op.drop_index("ix_requests_status", table_name="requests")
    op.drop_index("ix_requests_job", table_name="requests")
    op.drop_index("ix_request_datasets_name", table_name="request_datasets")


def downgrade() -> None:
    op.create_index("ix_request_datasets_name", "request_datasets", ["name"])
    op.create_index("ix_requests_job", "requests", ["job"])
    op.create_index("ix_requests_status", "requests", ["status"])
    op.drop_index("ix_request_datasets_name_request_id", table_name="request_datasets")
    op.drop_index("ix_requests_job_status_id", table_name="requests")
    op.drop_index("ix_requests_job_id", table_name="requests")
    op.drop_index("ix_requests_status_id", table_name="requests")
