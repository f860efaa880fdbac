"""Signed review links: one per reviewer and request, expiring, usable once.

A link token is ``<claims>.<timestamp>.<signature>``, made by itsdangerous'
:class:`~itsdangerous.TimestampSigner` (HMAC-SHA256 with the server's secret key, under this
purpose's own salt, so no signature made for a session or a form is ever a link's). The claims
are ``[request id, reviewer id, lifetime in seconds, nonce]``; the timestamp is when it was
signed, and the link expires a lifetime after it. The signature binds the link to its request
and its reviewer, and the link is a bearer credential: whoever holds it decides as that
reviewer (once: the nonce is spent when the link is used, see
:meth:`sluicegate.workflow.Workflow.decide`). So a link is sent only where its reviewer alone
reads it (a direct message), never to a channel that others read, the requester or the job's
owner among them.

Keys rotate: a link is signed with the current key and verified with it or any previous one
(:class:`sluicegate.server.keys.SigningKeys`). Links in the format before this one (``v1.``)
no longer verify.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from itsdangerous import BadSignature, TimestampSigner

from sluicegate.exceptions import ForbiddenError
from sluicegate.model import utcnow

__all__ = [
    "DEFAULT_LINK_TTL",
    "LinkClaims",
    "LinkError",
    "claimed_reviewer",
    "oldest_first",
    "sign_link",
    "verify_link",
]

DEFAULT_LINK_TTL = timedelta(hours=24)
_SALT = "sluicegate.review-link"

#: One key, or several with the current one first (:attr:`SigningKeys.verifying`).
Keys = bytes | Sequence[bytes]


class LinkError(ForbiddenError):
    """A link that is malformed, tampered with, expired, or for another request."""


@dataclass(frozen=True)
class LinkClaims:
    """What a valid link says."""

    request_id: str
    reviewer: str
    expires_at: datetime
    nonce: str


def oldest_first(keys: Keys) -> list[bytes]:
    """``keys`` (the current one first) in the order itsdangerous takes them: the newest,
    which signs, last."""
    return [keys] if isinstance(keys, bytes) else list(reversed(keys))


class _Signer(TimestampSigner):
    """itsdangerous' signer, with the signing moment settable (links made in the past, for
    tests and for a clock the caller holds)."""

    def __init__(self, keys: Keys, at: datetime | None = None) -> None:
        super().__init__(oldest_first(keys), salt=_SALT, digest_method=hashlib.sha256)
        self._at = None if at is None else int(at.timestamp())

    def get_timestamp(self) -> int:
        return super().get_timestamp() if self._at is None else self._at


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def sign_link(
    key: Keys,
    request_id: str,
    reviewer: str,
    *,
    ttl: timedelta = DEFAULT_LINK_TTL,
    now: datetime | None = None,
) -> str:
    """A link token for ``reviewer`` to decide ``request_id`` until ``now + ttl``."""
    claims = [request_id, reviewer, int(ttl.total_seconds()), secrets.token_hex(16)]
    payload = _b64(json.dumps(claims).encode())
    return _Signer(key, now).sign(payload).decode()


def verify_link(
    key: Keys, token: str, request_id: str, *, now: datetime | None = None
) -> LinkClaims:
    """The claims of a genuine, unexpired link for ``request_id``; else :class:`LinkError`.

    ``key`` may be several keys (the current one first, then those rotated out): a link
    signed by any of them verifies. Whether it was used already is the store's to say
    (:meth:`Store.use_link`).
    """
    if token.count(".") != 2:
        raise LinkError("this link is malformed")
    try:
        payload, signed_at = _Signer(key).unsign(token, return_timestamp=True)
    except BadSignature as err:
        raise LinkError(
            "this link's signature is not valid (it was altered or is not ours)"
        ) from err
    try:
        rid, reviewer, lifetime, nonce = json.loads(_unb64(payload.decode()))
        expires_at = signed_at.astimezone(timezone.utc) + timedelta(seconds=int(lifetime))
    except (ValueError, TypeError, OverflowError, binascii.Error) as err:  # signed: our bug
        raise LinkError("this link is malformed") from err
    if rid != request_id:
        raise LinkError("this link is for another request")
    if (now or utcnow()) >= expires_at:
        raise LinkError(f"this link expired at {expires_at:%Y-%m-%d %H:%M} UTC")
    return LinkClaims(str(rid), str(reviewer), expires_at, str(nonce))


def claimed_reviewer(token: str) -> str | None:
    """The reviewer a link says it is for, read WITHOUT checking it, or None if unreadable.

    Only as data of a refused link's audit row, labelled unverified: the name may be forged,
    so it is never an actor.
    """
    try:
        payload, _, _ = token.split(".")
        claims = json.loads(_unb64(payload))
    except (ValueError, TypeError, binascii.Error):
        return None
    if isinstance(claims, list) and len(claims) == 4 and isinstance(claims[1], str):
        reviewer = claims[1].strip()
        if 0 < len(reviewer) <= 256 and "\x00" not in reviewer:
            return reviewer
    return None
