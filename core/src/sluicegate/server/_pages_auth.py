"""Who is looking at a review page, and the signatures that prove it.

A viewer is identified, in this order, by a signed review link (``?t=`` on a page, the ``t``
form field on a decision), a session cookie set by signing in with a ``review`` token, or the
trusted SSO header when one is configured. Sessions and CSRF tokens are HMAC-SHA256 with the
server's secret key, each under its own purpose label, so no signature made for one thing
(a link, a session, a form) is ever accepted as another.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from fastapi import Request

from sluicegate.links import LinkError, verify_link
from sluicegate.model import Channel, utcnow
from sluicegate.server.state import ServerState

__all__ = [
    "SESSION_COOKIE",
    "SESSION_TTL",
    "Viewer",
    "csrf_ok",
    "csrf_token",
    "link_viewer",
    "read_session",
    "safe_next",
    "sign_session",
    "signed_in",
]

SESSION_COOKIE = "sluicegate_session"
SESSION_TTL = timedelta(hours=12)
_MAX_ID = 256  # the longest reviewer id the store keeps (audit actor column)
_MAX_LINK = 2048  # far longer than any link we sign


@dataclass(frozen=True)
class Viewer:
    """An identified reviewer and what their page's CSRF token is bound to."""

    reviewer: str
    via: Literal["link", "session", "sso"]
    #: The session cookie value, the link's nonce, or the SSO user.
    binding: str
    #: The link token, carried in the decision form (links only).
    link_token: str | None = None

    @property
    def channel(self) -> Channel:
        """Where this viewer's decision comes from, for the audit log."""
        return Channel.LINK if self.via == "link" else Channel.WEB


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(key: bytes, purpose: str, *parts: str) -> str:
    message = "\x1f".join((purpose, *parts)).encode()
    return _b64(hmac.new(key, message, hashlib.sha256).digest())


def _same(a: str, b: str) -> bool:
    # compare_digest refuses non-ASCII str; bytes keep it constant-time for any input.
    return hmac.compare_digest(a.encode(), b.encode())


def sign_session(key: bytes, reviewer: str, *, now: datetime | None = None) -> str:
    """A session cookie value: the reviewer id and an expiry, signed. Never a token."""
    expires = int(((now or utcnow()) + SESSION_TTL).timestamp())
    payload = _b64(json.dumps([reviewer, expires]).encode())
    return f"{payload}.{_mac(key, 'session', payload)}"


def read_session(key: bytes, value: str, *, now: datetime | None = None) -> str | None:
    """The reviewer of a genuine, unexpired session cookie value, else None."""
    payload, _, signature = value.partition(".")
    if not signature or not _same(signature, _mac(key, "session", payload)):
        return None
    try:
        reviewer, expires = json.loads(_unb64(payload))
    except (ValueError, TypeError, binascii.Error):
        return None
    if not isinstance(reviewer, str) or not isinstance(expires, int) or not reviewer:
        return None
    if (now or utcnow()).timestamp() >= expires:
        return None
    return reviewer


def csrf_token(key: bytes, request_id: str, viewer: Viewer) -> str:
    """The decision form's CSRF token: bound to the request and to how the viewer is known."""
    return _mac(key, "csrf", request_id, viewer.via, viewer.binding)


def csrf_ok(key: bytes, request_id: str, viewer: Viewer, given: str) -> bool:
    """True if ``given`` is this viewer's CSRF token for this request (constant time)."""
    return bool(given) and _same(given, csrf_token(key, request_id, viewer))


def link_viewer(st: ServerState, token: str, request_id: str) -> Viewer:
    """The viewer a link names; raises :class:`~sluicegate.links.LinkError` for a bad one."""
    if len(token) > _MAX_LINK:
        raise LinkError("this link is malformed")
    claims = verify_link(st.secret_key, token, request_id)
    return Viewer(claims.reviewer, "link", claims.nonce, link_token=token)


def signed_in(request: Request, st: ServerState) -> Viewer | None:
    """The viewer known by session cookie, else by the trusted SSO header (if configured)."""
    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie:
        reviewer = read_session(st.secret_key, cookie)
        if reviewer is not None:
            return Viewer(reviewer, "session", cookie)
    header = st.settings.sso_header
    if header:
        user = request.headers.get(header, "").strip()
        if 0 < len(user) <= _MAX_ID:
            return Viewer(user, "sso", user)
    return None


def safe_next(value: str | None, default: str = "/inbox") -> str:
    """``value`` if it is a path on this site (no open redirects), else ``default``."""
    if (
        value
        and value.startswith("/")
        and not value.startswith("//")
        and "\\" not in value
        and all(32 < ord(c) < 127 for c in value)
    ):
        return value
    return default
