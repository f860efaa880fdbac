"""Who is looking at a review page, and the signatures that prove it.

A viewer is identified, in this order, by a signed review link (``?t=`` on a page, the ``t``
form field on a decision: :mod:`sluicegate.links`), a session cookie set by signing in with a
``review`` token, or the trusted SSO header when one is configured.

Session cookies and CSRF tokens are signed by itsdangerous (HMAC-SHA256 with the server's
secret key), each purpose under its own salt, so no signature made for one thing (a link, a
session, a form) is ever accepted as another; signatures of the previous keys
(:mod:`sluicegate.server.keys`) still verify, and only the current key signs.

A session cookie holds a random secret and an expiry, nothing else. The session it names is
looked up in the database on every page request (:class:`~sluicegate.store.sessions.
SessionTable`): it is gone once its reviewer signs out or its token is revoked or expires, on
every replica. Forms that change who is signed in are protected too: the sign-in form by a
signed double-submit token (a cookie set with the form, and the form's field signed over it),
the sign-out form by a token bound to the session, and both refuse a post that the browser
says came from another site (``Sec-Fetch-Site``, ``Origin``).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal
from urllib.parse import urlsplit

from fastapi import Request
from itsdangerous import BadSignature, Signer

from sluicegate.links import Keys, LinkError, oldest_first, verify_link
from sluicegate.model import Channel, utcnow
from sluicegate.server.wiring import ServerState

__all__ = [
    "LOGIN_COOKIE",
    "SESSION_COOKIE",
    "SESSION_TTL",
    "Viewer",
    "csrf_ok",
    "csrf_token",
    "from_this_site",
    "link_viewer",
    "login_csrf",
    "login_csrf_ok",
    "logout_csrf_ok",
    "read_session",
    "safe_next",
    "session_viewer",
    "sign_session",
    "signed_in",
]

SESSION_COOKIE = "sluicegate_session"
#: The sign-in form's half of its double-submit CSRF token: a random nonce, set with the form.
LOGIN_COOKIE = "sluicegate_login"
SESSION_TTL = timedelta(hours=12)
_MAX_COOKIE = 512  # far longer than any cookie we set
_MAX_ID = 256  # the longest reviewer id the store keeps (audit actor column)
_MAX_LINK = 2048  # far longer than any link we sign


@dataclass(frozen=True)
class Viewer:
    """An identified reviewer and what their page's CSRF token is bound to."""

    reviewer: str
    via: Literal["link", "session", "sso"]
    #: The session's id, the link's nonce, or the SSO user.
    binding: str
    #: The link token, carried in the decision form (links only).
    link_token: str | None = None
    #: The sign-out form's CSRF token (sessions only).
    logout_csrf: str = ""

    @property
    def channel(self) -> Channel:
        """Where this viewer's decision comes from, for the audit log."""
        return Channel.LINK if self.via == "link" else Channel.WEB

    @property
    def link_nonce(self) -> str | None:
        """The nonce a decision through this viewer's link spends (None: not a link)."""
        return self.binding if self.via == "link" else None


def _signer(keys: Keys, purpose: str) -> Signer:
    return Signer(oldest_first(keys), salt=f"sluicegate.{purpose}", digest_method=hashlib.sha256)


def _mac(keys: Keys, purpose: str, *parts: str) -> str:
    """The signature of ``parts`` for ``purpose``, by the newest of ``keys``."""
    return _signer(keys, purpose).get_signature("\x1f".join(parts)).decode()


def _signed(keys: Keys, given: str, purpose: str, *parts: str) -> bool:
    """True if ``given`` is the signature of ``parts`` for ``purpose`` by one of ``keys``
    (constant time; any text, however malformed, is simply not a signature)."""
    if not given or len(given) > _MAX_COOKIE:
        return False
    return _signer(keys, purpose).verify_signature("\x1f".join(parts), given)


def sign_session(
    key: Keys, secret: str, *, now: datetime | None = None, ttl: timedelta = SESSION_TTL
) -> str:
    """A session cookie value: the session's secret and its expiry, signed. Nothing else: who
    the reviewer is, and whether the session still holds, the database says."""
    expires = int(((now or utcnow()) + ttl).timestamp())
    payload = base64.urlsafe_b64encode(json.dumps([secret, expires]).encode()).rstrip(b"=")
    return _signer(key, "session").sign(payload).decode()


def read_session(keys: Keys, value: str, *, now: datetime | None = None) -> str | None:
    """The session secret of a genuine, unexpired session cookie value, else None."""
    if len(value) > _MAX_COOKIE:
        return None
    try:
        payload = _signer(keys, "session").unsign(value).decode()
        secret, expires = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (BadSignature, ValueError, TypeError, binascii.Error):
        return None
    if not isinstance(secret, str) or not isinstance(expires, int) or not secret:
        return None
    if (now or utcnow()).timestamp() >= expires:
        return None
    return secret


def csrf_token(key: Keys, request_id: str, viewer: Viewer) -> str:
    """The decision form's CSRF token: bound to the request and to how the viewer is known."""
    return _mac(key, "csrf", request_id, viewer.via, viewer.binding)


def csrf_ok(keys: Keys, request_id: str, viewer: Viewer, given: str) -> bool:
    """True if ``given`` is this viewer's CSRF token for this request (constant time)."""
    return _signed(keys, given, "csrf", request_id, viewer.via, viewer.binding)


def login_csrf(key: Keys, nonce: str) -> str:
    """The sign-in form's CSRF field, signed over the nonce in its :data:`LOGIN_COOKIE`."""
    return _mac(key, "login", nonce)


def login_csrf_ok(keys: Keys, nonce: str | None, given: str) -> bool:
    """True if ``given`` is the sign-in form's field for the ``nonce`` its cookie holds."""
    if not nonce or len(nonce) > _MAX_COOKIE:
        return False
    return _signed(keys, given, "login", nonce)


def _logout_csrf(key: Keys, session_id: str) -> str:
    return _mac(key, "logout", session_id)


def logout_csrf_ok(keys: Keys, viewer: Viewer, given: str) -> bool:
    """True if ``given`` is the sign-out form's token of ``viewer``'s session."""
    return viewer.via == "session" and _signed(keys, given, "logout", viewer.binding)


def from_this_site(request: Request, st: ServerState) -> bool:
    """False when the browser says the form was posted from another site.

    ``Sec-Fetch-Site`` (every current browser sends it) must be ``same-origin`` (or ``none``:
    typed by the user); ``Origin``, when sent, must be this server's (as configured in
    ``server_url``, or as the request reached it). A client that sends neither (not a
    browser, or a very old one) is left to the CSRF token.
    """
    site = request.headers.get("sec-fetch-site")
    if site is not None and site.strip().lower() not in ("same-origin", "none"):
        return False
    origin = request.headers.get("origin")
    if origin is None:
        return True
    ours = {_origin(st.settings.server_url), _origin(str(request.base_url))}
    return origin.strip().lower().rstrip("/") in ours


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


def link_viewer(st: ServerState, token: str, request_id: str) -> Viewer:
    """The viewer a link names; raises :class:`~sluicegate.links.LinkError` for a bad one."""
    if len(token) > _MAX_LINK:
        raise LinkError("this link is malformed")
    claims = verify_link(st.keys.verifying, token, request_id)
    return Viewer(claims.reviewer, "link", claims.nonce, link_token=token)


async def session_viewer(request: Request, st: ServerState) -> Viewer | None:
    """The viewer of a live session named by the request's cookie, else None.

    Checked in the database each time, never cached: a session ends everywhere the moment
    its reviewer signs out or its token is revoked.
    """
    cookie = request.cookies.get(SESSION_COOKIE)
    secret = read_session(st.keys.verifying, cookie) if cookie else None
    live = await st.writer.read(st.sessions.live, secret) if secret else None
    if live is None:
        return None
    return Viewer(
        live.principal, "session", live.id, logout_csrf=_logout_csrf(st.secret_key, live.id)
    )


async def signed_in(request: Request, st: ServerState) -> Viewer | None:
    """The viewer known by session cookie, else by the trusted SSO header (if configured)."""
    viewer = await session_viewer(request, st)
    if viewer is not None:
        return viewer
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
