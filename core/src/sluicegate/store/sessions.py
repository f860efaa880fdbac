"""Review-page sessions in the database: started by signing in, checked by every page request.

A session belongs to the review token it was made from. The browser's cookie carries a random
secret (signed by the server, see :mod:`sluicegate.server.pages.auth`); the table keeps only
the secret's sha256. A session is live while it is not ended (sign-out), not past its expiry,
and its token is neither revoked nor expired. That is checked in the database on every page
request, so revoking a token or signing out ends the session on every replica at once, and a
replayed cookie finds nothing live.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import bindparam, delete, insert, or_, select, update

from sluicegate.model import utcnow
from sluicegate.store import audit
from sluicegate.store.facade import Store
from sluicegate.store.schema import sessions, tokens
from sluicegate.store.tokens import TokenInfo

__all__ = ["LiveSession", "SessionTable", "session_id"]

# Rows of sessions that ended this long ago are deleted when someone signs in.
_KEEP_ENDED = timedelta(days=1)

_LIVE = (
    select(sessions.c.id, sessions.c.principal)
    .select_from(sessions.join(tokens, tokens.c.id == sessions.c.token_id))
    .where(
        sessions.c.id == bindparam("sid"),
        sessions.c.ended_at.is_(None),
        sessions.c.expires_at > bindparam("now"),
        tokens.c.revoked_at.is_(None),
        or_(tokens.c.expires_at.is_(None), tokens.c.expires_at > bindparam("now")),
    )
)


def session_id(secret: str) -> str:
    """The stored id of the session whose cookie carries ``secret``."""
    return hashlib.sha256(secret.encode()).hexdigest()


@dataclass(frozen=True)
class LiveSession:
    """A session that may be used now."""

    id: str
    principal: str


class SessionTable:
    """The review-page sessions of one :class:`Store`."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def start(self, token: TokenInfo, ttl: timedelta) -> tuple[str, datetime]:
        """A new session for ``token``'s principal, ending at the latest after ``ttl``:
        ``(secret for the cookie, expiry)``. Audited as ``session.started``."""
        secret = secrets.token_urlsafe(32)
        now = utcnow()
        expires = now + ttl
        with self.store.write() as conn:
            conn.execute(delete(sessions).where(sessions.c.expires_at < now - _KEEP_ENDED))
            conn.execute(
                insert(sessions).values(
                    id=session_id(secret),
                    token_id=token.id,
                    principal=token.principal,
                    created_at=now,
                    expires_at=expires,
                )
            )
            audit.append(
                conn,
                [
                    audit.AuditEvent(
                        "session.started", actor=token.principal, data={"token_id": token.id}
                    )
                ],
            )
        return secret, expires

    def live(self, secret: str) -> LiveSession | None:
        """The session whose cookie carries ``secret``, if it is live now; else None."""
        with self.store.read() as conn:
            row = conn.execute(_LIVE, {"sid": session_id(secret), "now": utcnow()}).first()
        return None if row is None else LiveSession(row.id, row.principal)

    def end(self, sid: str) -> bool:
        """End the session ``sid`` (sign-out); False if it had ended already. Audited as
        ``session.ended``."""
        with self.store.write() as conn:
            done = conn.execute(
                update(sessions)
                .where(sessions.c.id == sid, sessions.c.ended_at.is_(None))
                .values(ended_at=utcnow())
            )
            if done.rowcount != 1:
                return False
            row = conn.execute(
                select(sessions.c.principal, sessions.c.token_id).where(sessions.c.id == sid)
            ).one()
            audit.append(
                conn,
                [
                    audit.AuditEvent(
                        "session.ended", actor=row.principal, data={"token_id": row.token_id}
                    )
                ],
            )
        return True
