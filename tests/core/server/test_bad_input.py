"""Bad input is a 4xx with the JSON error body, never a 500: gates and Slack's signed payloads.

Each case is what a caller can really send: a gate's JSON body as a pipeline posts it, and a
Slack interaction correctly signed with the server's signing secret (the signature proves who
sent it, not that its shape is right). The app runs in process (ASGI, lifespan running).
"""

from __future__ import annotations

import json
import time
import urllib.parse
import uuid
from collections.abc import Callable
from typing import Any

import pytest

from sluicegate.model import MAX_CONTEXT_DEPTH
from tests.core.support.api import Harness, assert_error
from tests.core.support.fakechat import (
    block_actions_payload,
    signed_interaction,
    view_submission_payload,
)
from tests.core.support.serverproc import PII_EXPORT

pytestmark = pytest.mark.usefixtures("isolated")  # none of the developer's settings leaks in

SIGNING = "8f742231b10e8888abcd99yyyzzz85a5"
INTERACTIONS = "/integrations/slack/interactions"


@pytest.fixture
def slack_api(sqlite_url: str, make_api: Callable[..., Harness]) -> Harness:
    """The API on SQLite, with a Slack signing secret (and no channel to notify)."""
    return make_api(sqlite_url, slack={"signing_secret": SIGNING})


def nested(depth: int) -> str:
    """JSON text of objects nested ``depth`` levels deep."""
    return '{"a":' * (depth - 1) + "{}" + "}" * (depth - 1)


def gate_body(context: str) -> bytes:
    """A gate's body, as text, with ``context`` spliced in unparsed (a client sends bytes)."""
    action = json.dumps({k: v for k, v in PII_EXPORT.items() if k != "context"})
    key = json.dumps(f"bad-input:{uuid.uuid4().hex}")
    return f'{{"idempotency_key":{key},"action":{action[:-1]},"context":{context}}}}}'.encode()


def post_gate(slack_api: Harness, body: bytes) -> Any:
    headers = {**slack_api.auth(), "Content-Type": "application/json"}
    return slack_api.c.post("/api/v1/requests", content=body, headers=headers)


# ----------------------------------------------------------------------------- gates


@pytest.mark.parametrize("depth", [MAX_CONTEXT_DEPTH + 1, 256, 300, 900])
def test_a_context_nested_too_deep_is_422_naming_the_field(slack_api: Harness, depth: int) -> None:
    body = assert_error(post_gate(slack_api, gate_body(nested(depth))), 422, "invalid_request")
    assert body["detail"].startswith("action.context: "), body
    assert f"more than {MAX_CONTEXT_DEPTH} levels" in body["detail"], body
    assert len(body["detail"]) < 200, body  # one sentence, whatever the nesting
    assert not slack_api.audit("request.created")
    # At the limit, the same gate opens.
    assert post_gate(slack_api, gate_body(nested(MAX_CONTEXT_DEPTH))).status_code == 201
    # Deeper than Python's JSON parser goes (100,000 levels, half a megabyte): 400.
    assert_error(post_gate(slack_api, gate_body(nested(100_000))), 400)


@pytest.mark.parametrize(
    ("context", "says"),
    [
        ('{"query": "\\ud800"}', "context.query holds a lone surrogate"),
        ('{"rows": [1, {"note": "x\\udfff"}]}', "context.rows[1].note holds a lone surrogate"),
        ('{"\\udc00": 1}', "unable to parse raw data as a unicode string"),  # pydantic's word
    ],
)
def test_a_context_holding_a_lone_surrogate_is_422(
    slack_api: Harness, context: str, says: str
) -> None:
    body = assert_error(post_gate(slack_api, gate_body(context)), 422, "invalid_request")
    assert body["detail"].startswith("action.context") and says in body["detail"], body


# ----------------------------------------------------------------------------- Slack


def _signed(payload: Any) -> tuple[bytes, dict[str, str]]:
    return signed_interaction(payload, signing_secret=SIGNING)


def _raw_signed(form_value: str) -> tuple[bytes, dict[str, str]]:
    """A signed body whose payload field holds ``form_value`` as is (any JSON text)."""
    from sluicegate.notify.signing import sign_slack_request

    body = urllib.parse.urlencode({"payload": form_value}).encode()
    headers = sign_slack_request(SIGNING, body, int(time.time()))
    return body, {**headers, "Content-Type": "application/x-www-form-urlencoded"}


def _click(request_id: str, **changes: Any) -> dict[str, Any]:
    payload = block_actions_payload(
        user_id="U01ALICE",
        action_id="sluicegate_approve",
        request_id=request_id,
        response_url="",
    )
    return {**payload, **changes}


def _deny_form(request_id: str, **view_changes: Any) -> dict[str, Any]:
    meta = json.dumps({"request_id": request_id, "fingerprint": "sha256:x"})
    payload = view_submission_payload(
        user_id="U01ALICE", private_metadata=meta, comment="not this partner"
    )
    payload["view"] = {**payload["view"], **view_changes}
    return payload


WRONG_SHAPES = {
    "user a string": lambda rid: _click(rid, user="U01ALICE"),
    "user id a number": lambda rid: _click(rid, user={"id": 42}),
    "actions a number": lambda rid: _click(rid, actions=3),
    "an action a string": lambda rid: _click(rid, actions=["sluicegate_approve"]),
    "view a list": lambda rid: {**_deny_form(rid), "view": [1, 2]},
    "private_metadata a list": lambda rid: _deny_form(rid, private_metadata="[]"),
    "private_metadata not JSON": lambda rid: _deny_form(rid, private_metadata="{"),
    "state a string": lambda rid: _deny_form(rid, state="values"),
}


@pytest.mark.parametrize("case", list(WRONG_SHAPES))
def test_a_signed_slack_payload_of_the_wrong_shape_is_400(slack_api: Harness, case: str) -> None:
    request_id = slack_api.pending()["id"]
    body, headers = _signed(WRONG_SHAPES[case](request_id))
    answer = slack_api.c.post(INTERACTIONS, content=body, headers=headers)
    detail = assert_error(answer, 400, "malformed")["detail"]
    assert "errors.pydantic.dev" not in detail and "\n" not in detail
    assert not slack_api.audit("decision.recorded") and not slack_api.audit("decision.rejected")
    assert slack_api.get(request_id)["status"] == "pending"
    # A well-formed click on the same request still decides.
    body, headers = _signed(_click(request_id))
    assert slack_api.c.post(INTERACTIONS, content=body, headers=headers).status_code == 200
    assert slack_api.get(request_id)["approvals"] == 1


@pytest.mark.parametrize("text", ['"a string"', "[1, 2]", "3", '{"a":' * 5000 + "1" + "}" * 5000])
def test_a_signed_payload_that_is_not_an_object_is_400(slack_api: Harness, text: str) -> None:
    body, headers = _raw_signed(text)
    assert_error(slack_api.c.post(INTERACTIONS, content=body, headers=headers), 400, "malformed")
