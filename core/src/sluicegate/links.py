"""Signed review links: one per reviewer and request, expiring, usable once.

A link carries ``[request id, reviewer id, expiry, nonce]`` and an HMAC-SHA256 over them with
the server's secret key. The signature binds the link to its reviewer, and the link is a
bearer credential: whoever holds it decides as that reviewer (once: the nonce is recorded when
the link is used). So a link is sent only where its reviewer alone reads it (a direct
message), never to a channel that others read, the requester or the job's owner among them.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from sluicegate.exceptions import ForbiddenError
from sluicegate.model import utcnow

__all__ = [
    "DEFAULT_LINK_TTL",
    "LinkClaims",
    "LinkError",
    "claimed_reviewer",
    "sign_link",
    "verify_link",
]

DEFAULT_LINK_TTL = timedelta(hours=24)
_VERSION = "v1"


class LinkError(ForbiddenError):
    """A link that is malformed, tampered with, expired, for another request, or used."""


@dataclass(frozen=True)
class LinkClaims:
    """What a valid link says."""

    request_id: str
    reviewer: str
    expires_at: datetime
    nonce: str


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(key: bytes, payload: str) -> bytes:
    return hmac.new(key, f"{_VERSION}.{payload}".encode(), hashlib.sha256).digest()


def sign_link(
    key: bytes,
    request_id: str,
    reviewer: str,
    *,
    ttl: timedelta = DEFAULT_LINK_TTL,
    now: datetime | None = None,
) -> str:
    """A link token for ``reviewer`` to decide ``request_id`` until ``now + ttl``."""
    expires = int(((now or utcnow()) + ttl).timestamp())
    payload = _b64(json.dumps([request_id, reviewer, expires, secrets.token_hex(16)]).encode())
    return f"{_VERSION}.{payload}.{_b64(_mac(key, payload))}"


def verify_link(
    key: bytes | Sequence[bytes], token: str, request_id: str, *, now: datetime | None = None
) -> LinkClaims:
    """The claims of a genuine, unexpired link for ``request_id``; else :class:`LinkError`.

    ``key`` may be several keys (the current one and those rotated out): a link signed by any
    of them verifies. Whether it was used already is the store's to say
    (:meth:`Store.use_link`).
    """
    keys = (key,) if isinstance(key, bytes) else tuple(key)
    try:
        version, payload, signature = token.split(".")
        given = _unb64(signature)
    except (ValueError, binascii.Error) as err:
        raise LinkError("this link is malformed") from err
    if version != _VERSION or not any(hmac.compare_digest(given, _mac(k, payload)) for k in keys):
        raise LinkError("this link's signature is not valid (it was altered or is not ours)")
    try:
        rid, reviewer, expires, nonce = json.loads(_unb64(payload))
        expires_at = datetime.fromtimestamp(int(expires), tz=timezone.utc)
    except (ValueError, TypeError, binascii.Error) as err:  # signed but unreadable: our bug
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
        _, payload, _ = token.split(".")
        claims = json.loads(_unb64(payload))
    except (ValueError, TypeError, binascii.Error):
        return None
    if isinstance(claims, list) and len(claims) == 4 and isinstance(claims[1], str):
        reviewer = claims[1].strip()
        if 0 < len(reviewer) <= 256 and "\x00" not in reviewer:
            return reviewer
    return None
