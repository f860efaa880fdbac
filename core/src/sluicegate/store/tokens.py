"""API tokens: created, looked up by their hash, listed, revoked; each change audited.

A token is random, shown once, and stored only as its sha256 (tokens are random, so a plain
hash is enough). A token holds one scope (:data:`TOKEN_SCOPES`) for one principal, until it
is revoked or, when it was given a lifetime, until it expires.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import bindparam, insert, select, update

from sluicegate.exceptions import ActionError, NotFoundError
from sluicegate.model import utcnow
from sluicegate.store import audit
from sluicegate.store.schema import tokens
from sluicegate.store.transactions import Transactions

__all__ = [
    "TOKEN_SCOPES",
    "TokenInfo",
    "TokenRecord",
    "create_token",
    "hash_token",
    "list_tokens",
    "revoke_tokens",
    "token_info",
]

#: What a token may do: ``request`` opens and cancels gates, ``review`` decides, ``audit``
#: reads and verifies the audit log.
TOKEN_SCOPES = ("request", "review", "audit")

_TOKEN = select(tokens.c.id, tokens.c.principal, tokens.c.scope, tokens.c.expires_at).where(
    tokens.c.token_hash == bindparam("h"), tokens.c.revoked_at.is_(None)
)
_TOKEN_COLUMNS = (
    tokens.c.id,
    tokens.c.principal,
    tokens.c.scope,
    tokens.c.created_at,
    tokens.c.expires_at,
    tokens.c.revoked_at,
)


def hash_token(token: str) -> str:
    """The stored form of an API token (tokens are random, so a plain sha256 is enough)."""
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class TokenInfo:
    """Who a bearer token belongs to, and until when it holds."""

    principal: str
    scope: str
    id: str = ""
    #: None: until revoked.
    expires_at: datetime | None = None

    def expired(self, now: datetime | None = None) -> bool:
        """True once the token's expiry has passed."""
        return self.expires_at is not None and (now or utcnow()) >= self.expires_at


@dataclass(frozen=True)
class TokenRecord:
    """A token as ``sluicegate token list`` shows it: never the token, nor its hash."""

    id: str
    principal: str
    scope: str
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None


def create_token(tx: Transactions, principal: str, scope: str, ttl: timedelta | None) -> str:
    """``Store.create_token``: a new token, audited as ``token.created``; returns it."""
    if scope not in TOKEN_SCOPES:
        raise ActionError(f"scope {scope!r} is not one of {', '.join(TOKEN_SCOPES)}")
    if not principal.strip() or len(principal) > 256 or "\x00" in principal:
        raise ActionError("a principal is 1 to 256 characters")
    if ttl is not None and ttl <= timedelta(0):
        raise ActionError(f"a token's lifetime must be positive, not {ttl}")
    token = f"sg{scope[:3]}_{secrets.token_urlsafe(32)}"
    token_id = str(uuid.uuid4())
    now = utcnow()
    expires = None if ttl is None else now + ttl
    with tx.write() as conn:
        conn.execute(
            insert(tokens).values(
                id=token_id,
                token_hash=hash_token(token),
                principal=principal,
                scope=scope,
                created_at=now,
                expires_at=expires,
            )
        )
        data = {"scope": scope, "token_id": token_id}
        if expires is not None:
            data["expires_at"] = audit.format_ts(expires)
        audit.append(conn, [audit.AuditEvent("token.created", actor=principal, data=data)])
    return token


def token_info(tx: Transactions, token: str) -> TokenInfo | None:
    """``Store.token_info``: whose ``token`` is; None when unknown, revoked or expired."""
    with tx.read() as conn:
        row = conn.execute(_TOKEN, {"h": hash_token(token)}).one_or_none()
    if row is None:
        return None
    info = TokenInfo(row.principal, row.scope, row.id, row.expires_at)
    return None if info.expired() else info


def list_tokens(tx: Transactions, principal: str | None) -> list[TokenRecord]:
    """``Store.list_tokens``: every token (of ``principal``), oldest first."""
    stmt = select(*_TOKEN_COLUMNS).order_by(tokens.c.created_at, tokens.c.id)
    if principal is not None:
        stmt = stmt.where(tokens.c.principal == principal)
    with tx.read() as conn:
        return [TokenRecord(*row) for row in conn.execute(stmt)]


def revoke_tokens(
    tx: Transactions, *, token_id: str | None, principal: str | None
) -> list[TokenRecord]:
    """``Store.revoke_tokens``: one token by id, or all of a principal's, each audited as
    ``token.revoked``; returns those this call revoked."""
    if (token_id is None) == (principal is None):
        raise ActionError("revoke one token by its id, or all of one principal's")
    match = tokens.c.id == token_id if token_id is not None else tokens.c.principal == principal
    now = utcnow()
    with tx.write() as conn:
        found = [TokenRecord(*row) for row in conn.execute(select(*_TOKEN_COLUMNS).where(match))]
        if not found:
            what = f"id {token_id}" if token_id is not None else f"principal {principal!r}"
            raise NotFoundError(f"no token with {what}")
        live = [t for t in found if t.revoked_at is None]
        if live:
            conn.execute(
                update(tokens).where(tokens.c.id.in_([t.id for t in live])).values(revoked_at=now)
            )
            audit.append(
                conn,
                [
                    audit.AuditEvent(
                        "token.revoked",
                        actor=t.principal,
                        data={"scope": t.scope, "token_id": t.id},
                    )
                    for t in live
                ],
            )
    return [TokenRecord(t.id, t.principal, t.scope, t.created_at, t.expires_at, now) for t in live]
