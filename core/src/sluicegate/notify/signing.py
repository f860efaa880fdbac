"""Request signatures: Slack's (verified on its interaction requests) and the generic webhook's.

Slack (``X-Slack-Signature``): Slack sends ``X-Slack-Request-Timestamp: <unix seconds>`` and
``X-Slack-Signature: v0=<hex>``, the hex being HMAC-SHA256, keyed with the app's signing
secret, over ``v0:<timestamp>:<raw body>``. :func:`verify_slack_request` checks it over the
raw bytes (before any form or JSON parsing) with slack_sdk's ``SignatureVerifier`` (constant
time), and refuses a timestamp more than five minutes from now either way, so a captured
request cannot be replayed later; it says why a request fails, which the verifier alone does
not. :func:`sign_slack_request` is Slack's side, for tests and fakes: written apart from the
verifier, so that a test of one is not a round trip through the other.

The generic webhook (``X-Sluicegate-Signature``), as a receiver checks it:

- headers: ``X-Sluicegate-Timestamp: <unix seconds>`` and
  ``X-Sluicegate-Signature: v1=<hex>``;
- ``<hex>`` is the lowercase hex HMAC-SHA256, keyed with the shared secret
  (``SLUICEGATE_WEBHOOK__SECRET``, UTF-8), over ``<timestamp>.<raw body>``: the timestamp's
  ASCII digits, one ``.``, then the body's bytes exactly as received;
- compare in constant time, and refuse a timestamp more than 300 seconds from your clock, so
  that a captured delivery cannot be replayed;
- while a secret is being rotated the header may hold several comma-separated signatures
  (``v1=<hex>,v1=<hex>``): accept the delivery if any one matches.

For example, in Python::

    import hashlib, hmac, time

    def genuine(secret: str, headers, body: bytes) -> bool:
        ts = headers["X-Sluicegate-Timestamp"]
        if not ts.isdigit() or abs(time.time() - int(ts)) > 300:
            return False
        mac = hmac.new(secret.encode(), ts.encode() + b"." + body, hashlib.sha256).hexdigest()
        given = [s.strip() for s in headers["X-Sluicegate-Signature"].split(",")]
        return any(hmac.compare_digest(f"v1={mac}".encode(), s.encode()) for s in given)

:func:`verify_webhook` is that check (it is what our tests use).

Every delivery also carries ``X-Sluicegate-Delivery: <uuid>``, the same on each resend of one
notification (a random id planned with it). A notification is sent again only after a crash,
or a server cut off from its database, between the receiver's answer and the moment the
server records it as sent; a receiver that must not act twice keeps the ids it has seen (a
day's worth is plenty: resends come within minutes) and drops a repeat. The header is not
signed: check the signature first; an id is random, so a forged header can only repeat one
its forger has already seen. Slack's and Teams' webhooks get the header too, but neither lets
anyone read it.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from collections.abc import Mapping

from sluicegate.exceptions import ConfigError, SluicegateError

#: The window Slack documents, and the one slack_sdk's ``SignatureVerifier`` holds to.
SLACK_TOLERANCE = 300

__all__ = [
    "SLACK_SIGNATURE_HEADER",
    "SLACK_TIMESTAMP_HEADER",
    "SLACK_TOLERANCE",
    "WEBHOOK_DELIVERY_HEADER",
    "WEBHOOK_SIGNATURE_HEADER",
    "WEBHOOK_TIMESTAMP_HEADER",
    "SignatureError",
    "SlackSignatureError",
    "WebhookSignatureError",
    "sign_slack_request",
    "sign_webhook",
    "verify_slack_request",
    "verify_webhook",
]

SLACK_TIMESTAMP_HEADER = "X-Slack-Request-Timestamp"
SLACK_SIGNATURE_HEADER = "X-Slack-Signature"
WEBHOOK_TIMESTAMP_HEADER = "X-Sluicegate-Timestamp"
WEBHOOK_SIGNATURE_HEADER = "X-Sluicegate-Signature"
#: The id of one notification, the same on every resend of it (see the module docstring).
WEBHOOK_DELIVERY_HEADER = "X-Sluicegate-Delivery"

_DIGITS = re.compile(r"[0-9]{1,12}")


class SignatureError(SluicegateError):
    """A signed request whose signature does not hold.

    ``reason`` says why in one sentence; ``code`` names the case for programs and metrics:
    ``missing``, ``malformed``, ``stale``, ``future``, ``version`` or ``mismatch``.
    """

    def __init__(self, reason: str, code: str = "mismatch") -> None:
        super().__init__(reason)
        self.reason = reason
        self.code = code


class SlackSignatureError(SignatureError):
    """A request claiming to come from Slack whose signature does not hold (answer 401)."""


class WebhookSignatureError(SignatureError):
    """A webhook delivery whose Sluicegate signature does not hold."""


def _mac(secret: str, message: bytes) -> str:
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def _same(expected: str, given: str) -> bool:
    # compare_digest refuses non-ASCII str; as bytes, any odd character simply mismatches.
    return hmac.compare_digest(expected.encode(), given.encode("utf-8", "replace"))


def _check_time(
    error: type[SignatureError],
    header: str,
    timestamp: str | None,
    now: float | None,
    tolerance: int,
) -> str:
    if timestamp is None or not timestamp.strip():
        raise error(f"the {header} header is missing", "missing")
    timestamp = timestamp.strip()
    if not _DIGITS.fullmatch(timestamp):
        raise error(f"{header} {timestamp[:40]!r} is not a Unix time in seconds", "malformed")
    age = (time.time() if now is None else now) - int(timestamp)
    if age > tolerance:
        raise error(
            f"{header} is {int(age)} s old (more than {tolerance} s): a replayed request, "
            "or a clock that is wrong",
            "stale",
        )
    if -age > tolerance:
        raise error(
            f"{header} is {int(-age)} s in the future (more than {tolerance} s): a clock "
            "that is wrong",
            "future",
        )
    return timestamp


def sign_slack_request(signing_secret: str, body: bytes, timestamp: int) -> dict[str, str]:
    """The two headers Slack sends with ``body`` at ``timestamp`` (for tests and fakes)."""
    mac = _mac(signing_secret, b"v0:%d:" % timestamp + body)
    return {SLACK_TIMESTAMP_HEADER: str(timestamp), SLACK_SIGNATURE_HEADER: f"v0={mac}"}


def verify_slack_request(
    signing_secret: str,
    *,
    timestamp: str | None,
    signature: str | None,
    body: bytes,
    now: float | None = None,
) -> None:
    """Return if ``body`` was signed by Slack with ``signing_secret``; else raise
    :class:`SlackSignatureError` saying why.

    ``timestamp`` and ``signature`` are the ``X-Slack-Request-Timestamp`` and
    ``X-Slack-Signature`` headers (None when absent); ``body`` is the raw request body;
    ``now`` (Unix seconds) defaults to the clock. An empty ``signing_secret`` is a
    :class:`~sluicegate.exceptions.ConfigError`: with it, anyone could sign.
    """
    from slack_sdk.signature import Clock, SignatureVerifier

    if not signing_secret:
        raise ConfigError(
            "SLUICEGATE_SLACK__SIGNING_SECRET is empty: Slack requests cannot be verified"
        )
    if signature is None or not signature.strip():
        raise SlackSignatureError(f"the {SLACK_SIGNATURE_HEADER} header is missing", "missing")
    at = time.time() if now is None else now  # one moment for both checks of the window
    ts = _check_time(SlackSignatureError, SLACK_TIMESTAMP_HEADER, timestamp, at, SLACK_TOLERANCE)
    signature = signature.strip()
    if not signature.startswith("v0="):
        raise SlackSignatureError(
            f"{SLACK_SIGNATURE_HEADER} is not a version v0 signature ({signature[:8]!r}...)",
            "version",
        )

    class _At(Clock):
        def now(self) -> float:
            return at

    verifier = SignatureVerifier(signing_secret, clock=_At())
    # The verifier compares str digests (non-ASCII raises) over a UTF-8 text of the body
    # (other bytes raise): neither can be Slack's, whose signatures are hex and bodies forms.
    genuine = signature.isascii()
    if genuine:
        try:
            genuine = verifier.is_valid(body=body, timestamp=ts, signature=signature)
        except UnicodeDecodeError:
            genuine = False
    if not genuine:
        raise SlackSignatureError(
            f"{SLACK_SIGNATURE_HEADER} does not match the body: not signed with our signing "
            "secret, or altered on the way",
            "mismatch",
        )


def sign_webhook(secret: str, body: bytes, *, timestamp: int) -> dict[str, str]:
    """The headers that sign a webhook delivery of ``body`` at ``timestamp``.

    ``X-Sluicegate-Signature: v1=`` + hex HMAC-SHA256(``secret``, ``"{timestamp}.{body}"``);
    see the module docstring for the receiver's side.
    """
    if not secret:
        raise ConfigError("SLUICEGATE_WEBHOOK__SECRET is empty: webhook bodies cannot be signed")
    mac = _mac(secret, b"%d." % timestamp + body)
    return {WEBHOOK_TIMESTAMP_HEADER: str(timestamp), WEBHOOK_SIGNATURE_HEADER: f"v1={mac}"}


def _header(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    if value is not None:
        return value
    wanted = name.lower()
    return next((v for k, v in headers.items() if k.lower() == wanted), None)


def verify_webhook(
    secret: str,
    headers: Mapping[str, str],
    body: bytes,
    *,
    now: float | None = None,
    tolerance: int = 300,
) -> None:
    """Return if ``body`` carries a genuine, fresh Sluicegate signature in ``headers`` (names
    in any case); else raise :class:`WebhookSignatureError` saying why."""
    if not secret:
        raise ConfigError("the webhook secret is empty: deliveries cannot be verified")
    header = _header(headers, WEBHOOK_SIGNATURE_HEADER)
    if header is None or not header.strip():
        raise WebhookSignatureError(f"the {WEBHOOK_SIGNATURE_HEADER} header is missing", "missing")
    ts = _check_time(
        WebhookSignatureError,
        WEBHOOK_TIMESTAMP_HEADER,
        _header(headers, WEBHOOK_TIMESTAMP_HEADER),
        now,
        tolerance,
    )
    given = [part.strip() for part in header.split(",") if part.strip()]
    if not any(part.startswith("v1=") for part in given):
        raise WebhookSignatureError(
            f"{WEBHOOK_SIGNATURE_HEADER} holds no version v1 signature", "version"
        )
    expected = "v1=" + _mac(secret, ts.encode() + b"." + body)
    # Check every candidate, so the time taken does not say which one matched.
    matches = [_same(expected, part) for part in given]
    if not any(matches):
        raise WebhookSignatureError(
            f"{WEBHOOK_SIGNATURE_HEADER} does not match the body: not signed with this "
            "secret, or altered on the way",
            "mismatch",
        )
