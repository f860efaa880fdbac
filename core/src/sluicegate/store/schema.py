"""The tables. Alembic migrations (``migrations/versions``) create exactly these.

Everything that is hashed or fingerprinted is stored as canonical JSON text, not as a
database JSON type, so that SQLite and PostgreSQL give back byte-identical values.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
)

__all__ = [
    "audit_events",
    "audit_head",
    "decisions",
    "lineage_edges",
    "lineage_events",
    "lineage_tags",
    "metadata",
    "outbox",
    "request_datasets",
    "requests",
    "server_values",
    "sessions",
    "tokens",
    "used_links",
]

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC in Python, on both databases (SQLite has no time zones)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime: Sluicegate stores only timezone-aware UTC")
        value = value.astimezone(timezone.utc)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return (
            value.replace(tzinfo=timezone.utc)
            if value.tzinfo is None
            else value.astimezone(timezone.utc)
        )


requests = Table(
    "requests",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("idempotency_key", String(512), nullable=False, unique=True),
    Column("status", String(16), nullable=False),
    Column("rule", String(128)),
    Column("required_approvals", Integer, nullable=False),
    Column("required_denials", Integer, nullable=False, default=1),
    Column("groups", Text, nullable=False, default="[]"),
    Column("comment_on_deny", Boolean, nullable=False, default=False),
    Column("on_timeout", String(8), nullable=False, default="deny"),
    Column("fingerprint", String(80), nullable=False),
    Column("action", Text, nullable=False),
    Column("requester", Text, nullable=False),
    Column("orchestrator", String(64), nullable=False),
    Column("job", String(512), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("expires_at", UTCDateTime, index=True),
    Column("decided_at", UTCDateTime),
    Column("lineage_run_id", String(36), nullable=False),
    Column("policy_digest", String(80)),
    # Each dataset's effective classifications and where they came from, when the gate opened.
    Column("classifications", Text, nullable=False, default="{}", server_default="{}"),
    # Bumped by every change; a compare-and-set on status also bumps it.
    Column("version", Integer, nullable=False, default=1),
    # Listings are newest first, paged by id (``before=<id>``): each filter's index ends in
    # id, so a page is a range read of ``limit`` entries, not a sort of every match
    # (revision 0006; a status-only index sorted all 100,000 pending requests for each page).
    Index("ix_requests_status_id", "status", "id"),
    Index("ix_requests_job_id", "job", "id"),
    Index("ix_requests_job_status_id", "job", "status", "id"),
)

request_datasets = Table(
    "request_datasets",
    metadata,
    Column("request_id", String(36), ForeignKey("requests.id", ondelete="CASCADE"), nullable=False),
    Column("role", String(8), nullable=False),  # input | output
    Column("namespace", String(1024), nullable=False),
    Column("name", String(1024), nullable=False),
    # A dataset's requests, newest first (the dataset filter of listings; revision 0006).
    Index("ix_request_datasets_name_request_id", "name", "request_id"),
    Index("ix_request_datasets_request_id", "request_id"),
)

decisions = Table(
    "decisions",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("request_id", String(36), ForeignKey("requests.id", ondelete="CASCADE"), nullable=False),
    Column("reviewer", String(256), nullable=False),
    Column("verdict", String(8), nullable=False),
    Column("comment", Text, nullable=False, default=""),
    Column("channel", String(16), nullable=False),
    Column("fingerprint", String(80), nullable=False),
    Column("decided_at", UTCDateTime, nullable=False),
    # One reviewer counts once, whatever channel or replica they come through.
    UniqueConstraint("request_id", "reviewer"),
)

audit_events = Table(
    "audit_events",
    metadata,
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    Column("ts", String(32), nullable=False, index=True),
    Column("kind", String(64), nullable=False),
    Column("request_id", String(36), index=True),
    Column("actor", String(256), index=True),
    Column("job", String(512), index=True),
    Column("datasets", Text, nullable=False),
    Column("data", Text, nullable=False),
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False),
)

# One row: the newest seq and hash. Appends lock it, which orders them into one chain, and
# verify compares it with the last row, which catches a log whose tail was cut off.
audit_head = Table(
    "audit_head",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("seq", BigInteger, nullable=False),
    Column("hash", String(64), nullable=False),
)

# API tokens: only a hash is kept, so a leaked database leaks no usable token.
tokens = Table(
    "tokens",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("principal", String(256), nullable=False),
    Column("scope", String(16), nullable=False),  # request | review | audit
    Column("created_at", UTCDateTime, nullable=False),
    Column("revoked_at", UTCDateTime),
    Column("expires_at", UTCDateTime),  # none: until revoked
)

# Review-page sessions, each made by signing in with one review token. The cookie carries the
# session's secret (signed); only its sha256 is kept here. A page request finds its session
# live only while the session is not ended (sign-out) or past ``expires_at`` and its token is
# neither revoked nor expired: revoking a token ends its sessions on every replica at once.
sessions = Table(
    "sessions",
    metadata,
    Column("id", String(64), primary_key=True),  # sha256 of the cookie's secret
    Column("token_id", String(36), ForeignKey("tokens.id", ondelete="CASCADE"), nullable=False),
    Column("principal", String(256), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("expires_at", UTCDateTime, nullable=False, index=True),
    Column("ended_at", UTCDateTime),
    Index("ix_sessions_token_id", "token_id"),
)

# Nonces of signed review links already used: a link decides once.
used_links = Table(
    "used_links",
    metadata,
    Column("nonce", String(64), primary_key=True),
    Column("request_id", String(36), nullable=False),
    Column("reviewer", String(256), nullable=False),
    Column("used_at", UTCDateTime, nullable=False),
)

# Server-wide values every replica must share. (Before revision 0005 it held the generated
# secret key; that key is never stored in the database any more, see server/keys.py.)
server_values = Table(
    "server_values",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)

# OpenLineage events as received by POST /api/v1/lineage (canonical JSON), and the graph they
# feed: one edge per (job, input, output), one tag per (dataset, classification). The server's
# in-memory graph follows the edge and tag ids, so every replica sees every replica's events.
_SERIAL = BigInteger().with_variant(Integer, "sqlite")  # SQLite autoincrements INTEGER keys

lineage_events = Table(
    "lineage_events",
    metadata,
    Column("id", _SERIAL, primary_key=True, autoincrement=True),
    Column("received_at", UTCDateTime, nullable=False),
    Column("event_kind", String(16), nullable=False),  # run | job | dataset
    Column("event_type", String(16)),
    Column("event_time", String(64), nullable=False),
    Column("run_id", String(36), index=True),
    Column("job_namespace", String(1024)),
    Column("job_name", String(1024)),
    Column("producer", Text, nullable=False),
    Column("body", Text, nullable=False),
)

lineage_edges = Table(
    "lineage_edges",
    metadata,
    Column("id", _SERIAL, primary_key=True, autoincrement=True),
    # sha256 of the six names: unique without an index over six long strings.
    Column("edge_key", String(64), nullable=False, unique=True),
    Column("job_namespace", String(1024), nullable=False),
    Column("job_name", String(1024), nullable=False),
    Column("src_namespace", String(1024), nullable=False),
    Column("src_name", String(1024), nullable=False),
    Column("dst_namespace", String(1024), nullable=False),
    Column("dst_name", String(1024), nullable=False),
    Column("first_seen", UTCDateTime, nullable=False),
)

lineage_tags = Table(
    "lineage_tags",
    metadata,
    Column("id", _SERIAL, primary_key=True, autoincrement=True),
    Column("tag_key", String(64), nullable=False, unique=True),
    Column("namespace", String(1024), nullable=False),
    Column("name", String(1024), nullable=False),
    Column("classification", String(64), nullable=False),
    Column("source", String(512), nullable=False),
    Column("first_seen", UTCDateTime, nullable=False),
)

# Notifications to send, written in the same transaction as the change that causes them (the
# outbox pattern): a crash after the commit loses nothing, the dispatcher sends after restart.
# ``dedupe_key`` makes each (request, event, target) one row however often it is planned.
outbox = Table(
    "outbox",
    metadata,
    Column("id", _SERIAL, primary_key=True, autoincrement=True),
    Column("dedupe_key", String(300), nullable=False, unique=True),
    Column("request_id", String(36), nullable=False, index=True),
    Column(
        "target", String(300), nullable=False
    ),  # slack:#chan | slack-dm:<reviewer> | teams | webhook
    Column("kind", String(40), nullable=False),  # request.created | decision.recorded | ...
    Column("payload", Text, nullable=False, default="{}"),
    Column("status", String(12), nullable=False, default="pending"),  # pending | sent | failed
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_at", UTCDateTime, nullable=False, index=True),
    Column("claimed_by", String(64)),
    Column("claimed_until", UTCDateTime),
    Column("created_at", UTCDateTime, nullable=False),
    Column("sent_at", UTCDateTime),
    Column("result", Text),  # what the channel answered that later sends need (Slack's ts)
    Column("last_error", Text),
)
