"""Review-page sessions tied to their token, token expiry, no secret key in the database.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-10

The signing key that earlier versions generated into ``server_values`` is deleted: whoever
could read the database could sign sessions and links with it. Links and sessions it signed
stop working; reviewers sign in again, and new links are signed with the key the server now
keeps outside the database (see ``sluicegate.server.keys``).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from sluicegate.store.schema import UTCDateTime

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("tokens") as batch:
        batch.add_column(sa.Column("expires_at", UTCDateTime))
    op.create_table(
        "sessions",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("token_id", sa.String(36), nullable=False),
        sa.Column("principal", sa.String(256), nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("expires_at", UTCDateTime, nullable=False),
        sa.Column("ended_at", UTCDateTime),
        sa.PrimaryKeyConstraint("id", name="pk_sessions"),
        sa.ForeignKeyConstraint(
            ["token_id"],
            ["tokens.id"],
            name="fk_sessions_token_id_tokens",
            ondelete="CASCADE",
        ),
    )
    op.create_index("ix_sessions_token_id", "sessions", ["token_id"])
    op.create_index("ix_sessions_expires_at", "sessions", ["expires_at"])
    op.execute(sa.text("DELETE FROM server_values WHERE name = 'secret_key'"))


def downgrade() -> None:
    op.drop_table("sessions")
    with op.batch_alter_table("tokens") as batch:
        batch.drop_column("expires_at")
