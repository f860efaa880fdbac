"""Request signatures: Slack's, checked against Slack's own documented example, and ours.

Slack's example ("Verifying requests from Slack", docs.slack.dev / api.slack.com): signing
secret ``8f742231b10e8888abcd99yyyzzz85a5``, timestamp ``1531420618``, a slash-command body,
and the signature Slack gives for them. Reproducing that digest from those inputs proves the
base string is assembled as Slack assembles it, which a round trip through our own signer
could not.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping

import pytest

from sluicegate.exceptions import ConfigError, SluicegateError
from sluicegate.notify.signing import (
    SignatureError,
    SlackSignatureError,
    WebhookSignatureError,
    sign_slack_request,
    sign_webhook,
    verify_slack_request,
    verify_webhook,
)

SLACK_DOC_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
SLACK_DOC_TIMESTAMP = 1531420618
SLACK_DOC_BODY = (
    b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow"
    b"&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner"
    b"&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands"
    b"%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN"
    b"&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c"
)
SLACK_DOC_SIGNATURE = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503"

SECRET = "sg-signing-secret-for-tests"
NOW = 1_764_590_400
BODY = b"payload=%7B%22type%22%3A%22block_actions%22%7D"


def slack(secret: str = SECRET, body: bytes = BODY, ts: int = NOW) -> dict[str, str]:
    return sign_slack_request(secret, body, ts)


def verify(headers: Mapping[str, str | None], body: bytes = BODY, now: float = NOW) -> None:
    verify_slack_request(
        SECRET,
        timestamp=headers.get("X-Slack-Request-Timestamp"),
        signature=headers.get("X-Slack-Signature"),
        body=body,
        now=now,
    )


# --------------------------------------------------------------------------------------------
# Slack


def test_slacks_documented_example_verifies() -> None:
    verify_slack_request(
        SLACK_DOC_SECRET,
        timestamp=str(SLACK_DOC_TIMESTAMP),
        signature=SLACK_DOC_SIGNATURE,
        body=SLACK_DOC_BODY,
        now=SLACK_DOC_TIMESTAMP + 10,
    )


def test_signing_reproduces_slacks_documented_example() -> None:
    assert sign_slack_request(SLACK_DOC_SECRET, SLACK_DOC_BODY, SLACK_DOC_TIMESTAMP) == {
        "X-Slack-Request-Timestamp": "1531420618",
        "X-Slack-Signature": SLACK_DOC_SIGNATURE,
    }


def test_slack_signature_is_hmac_sha256_over_the_documented_base_string() -> None:
    base = b"v0:" + str(NOW).encode() + b":" + BODY
    expected = "v0=" + hmac.new(SECRET.encode(), base, hashlib.sha256).hexdigest()
    assert slack()["X-Slack-Signature"] == expected


def test_a_genuine_request_passes() -> None:
    verify(dict(slack()))
    verify(dict(slack()), now=NOW + 299)  # inside the five minutes
    verify(dict(slack()), now=NOW - 299)  # a clock a little behind Slack's


@pytest.mark.parametrize(
    ("headers", "body", "now", "code", "says"),
    [
        pytest.param(
            slack(secret="someone-elses-secret"),
            BODY,
            NOW,
            "mismatch",
            "does not match",
            id="forged",
        ),
        pytest.param(slack(), BODY + b"&x=1", NOW, "mismatch", "does not match", id="tampered"),
        pytest.param(slack(), BODY, NOW + 360, "stale", "360 s old", id="stale-6-min"),
        pytest.param(slack(), BODY, NOW - 360, "future", "360 s in the future", id="future"),
        pytest.param(
            {"X-Slack-Signature": slack()["X-Slack-Signature"]},
            BODY,
            NOW,
            "missing",
            "X-Slack-Request-Timestamp header is missing",
            id="no-timestamp",
        ),
        pytest.param(
            {"X-Slack-Request-Timestamp": str(NOW)},
            BODY,
            NOW,
            "missing",
            "X-Slack-Signature header is missing",
            id="no-signature",
        ),
        pytest.param(
            {**slack(), "X-Slack-Request-Timestamp": "yesterday"},
            BODY,
            NOW,
            "malformed",
            "'yesterday' is not a Unix time",
            id="non-numeric",
        ),
        pytest.param(
            {**slack(), "X-Slack-Request-Timestamp": "1.5e9"},
            BODY,
            NOW,
            "malformed",
            "is not a Unix time",
            id="float-timestamp",
        ),
        pytest.param(
            {**slack(), "X-Slack-Signature": "v1=" + slack()["X-Slack-Signature"][3:]},
            BODY,
            NOW,
            "version",
            "not a version v0 signature",
            id="wrong-prefix",
        ),
        pytest.param(
            {**slack(), "X-Slack-Signature": "v0=\u00e9\u00e9"},
            BODY,
            NOW,
            "mismatch",
            "does not match",
            id="non-ascii",
        ),
    ],
)
def test_a_bad_request_is_refused_saying_why(
    headers: Mapping[str, str | None], body: bytes, now: float, code: str, says: str
) -> None:
    with pytest.raises(SlackSignatureError, match=says) as caught:
        verify(headers, body=body, now=now)
    assert caught.value.code == code
    assert caught.value.reason == str(caught.value)
    assert isinstance(caught.value, SluicegateError)


def test_timestamps_in_other_requests_cannot_be_reused() -> None:
    """A signature binds its timestamp: moving a captured request into the window fails."""
    captured = slack(ts=NOW - 3600)
    replayed = {**captured, "X-Slack-Request-Timestamp": str(NOW)}
    with pytest.raises(SlackSignatureError) as caught:
        verify(replayed)
    assert caught.value.code == "mismatch"


def test_the_reasons_are_distinct() -> None:
    reasons = set()
    for headers, now in [
        (slack(secret="x"), NOW),
        (slack(), NOW + 400),
        (slack(), NOW - 400),
        ({"X-Slack-Signature": "v0=ab"}, NOW),
        ({"X-Slack-Request-Timestamp": str(NOW)}, NOW),
        ({**slack(), "X-Slack-Request-Timestamp": "soon"}, NOW),
        ({**slack(), "X-Slack-Signature": "sha256=ab"}, NOW),
    ]:
        with pytest.raises(SlackSignatureError) as caught:
            verify(dict(headers), now=now)
        reasons.add((caught.value.code, caught.value.reason))
    assert len(reasons) == 7
    assert {code for code, _ in reasons} == {
        "mismatch",
        "stale",
        "future",
        "missing",
        "malformed",
        "version",
    }


def test_an_empty_signing_secret_is_a_configuration_error() -> None:
    with pytest.raises(ConfigError, match="SLUICEGATE_SLACK__SIGNING_SECRET is empty"):
        verify_slack_request(
            "", timestamp=str(NOW), signature=slack("")["X-Slack-Signature"], body=BODY, now=NOW
        )


# --------------------------------------------------------------------------------------------
# The generic webhook


def test_webhook_signature_is_as_documented_for_receivers() -> None:
    body = b'{"event":"request.created"}'
    headers = sign_webhook(SECRET, body, timestamp=NOW)
    mac = hmac.new(SECRET.encode(), f"{NOW}.".encode() + body, hashlib.sha256).hexdigest()
    assert headers == {"X-Sluicegate-Timestamp": str(NOW), "X-Sluicegate-Signature": f"v1={mac}"}


def test_a_genuine_webhook_delivery_passes_whatever_the_header_case() -> None:
    body = b'{"event":"reminder"}'
    headers = sign_webhook(SECRET, body, timestamp=NOW)
    verify_webhook(SECRET, headers, body, now=NOW + 10)
    verify_webhook(SECRET, {k.lower(): v for k, v in headers.items()}, body, now=NOW)


def test_a_webhook_signed_with_either_secret_passes_during_rotation() -> None:
    body = b"{}"
    old = sign_webhook("old-secret", body, timestamp=NOW)["X-Sluicegate-Signature"]
    new = sign_webhook(SECRET, body, timestamp=NOW)["X-Sluicegate-Signature"]
    headers = {"X-Sluicegate-Timestamp": str(NOW), "X-Sluicegate-Signature": f"{old}, {new}"}
    verify_webhook(SECRET, headers, body, now=NOW)


@pytest.mark.parametrize(
    ("change", "now", "code"),
    [
        pytest.param({"X-Sluicegate-Signature": None}, NOW, "missing", id="no-signature"),
        pytest.param({"X-Sluicegate-Timestamp": None}, NOW, "missing", id="no-timestamp"),
        pytest.param({"X-Sluicegate-Timestamp": "soon"}, NOW, "malformed", id="non-numeric"),
        pytest.param({}, NOW + 301, "stale", id="stale"),
        pytest.param({}, NOW - 301, "future", id="future"),
        pytest.param({"X-Sluicegate-Signature": "v0=abc"}, NOW, "version", id="wrong-prefix"),
        pytest.param({"X-Sluicegate-Signature": "v1=" + "0" * 64}, NOW, "mismatch", id="forged"),
        pytest.param({"body": b'{"event":"request.approved"}'}, NOW, "mismatch", id="tampered"),
    ],
)
def test_a_bad_webhook_delivery_is_refused(change: dict[str, object], now: int, code: str) -> None:
    body = b'{"event":"request.denied"}'
    headers: dict[str, str] = dict(sign_webhook(SECRET, body, timestamp=NOW))
    for name, value in change.items():
        if name == "body":
            assert isinstance(value, bytes)
            body = value
        elif value is None:
            del headers[name]
        else:
            assert isinstance(value, str)
            headers[name] = value
    with pytest.raises(WebhookSignatureError) as caught:
        verify_webhook(SECRET, headers, body, now=now)
    assert caught.value.code == code
    assert isinstance(caught.value, SignatureError)


def test_webhooks_without_a_secret_are_a_configuration_error() -> None:
    with pytest.raises(ConfigError):
        sign_webhook("", b"{}", timestamp=NOW)
    with pytest.raises(ConfigError):
        verify_webhook("", {}, b"{}", now=NOW)
