"""The domain model: status machine, fingerprints, ids, validation of untrusted input."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sluicegate.exceptions import ActionError, TransitionError
from sluicegate.model import (
    MAX_CONTEXT_BYTES,
    TERMINAL,
    Action,
    ApprovalRequest,
    Asset,
    Requester,
    Status,
    check_transition,
    parse_action,
    proceeds,
    utcnow,
    uuid7,
)
from sluicegate.wire import GateIn, RequesterIn

CUSTOMERS = {"namespace": "postgres://prod:5432", "name": "crm.public.customers"}
BUCKET = {"namespace": "s3://partner-share", "name": "exports/customers.csv"}


def export_action(**over: object) -> Action:
    data: dict[str, object] = {
        "kind": "export",
        "summary": "Export customers",
        "inputs": [CUSTOMERS],
        "outputs": [BUCKET],
        "context": {"rows": 120000},
    }
    data.update(over)
    return parse_action(data)


# ----------------------------------------------------------------- status machine


@pytest.mark.parametrize("terminal", sorted(TERMINAL, key=lambda s: s.value))
def test_pending_may_end_in_every_terminal_state(terminal: Status) -> None:
    check_transition(Status.PENDING, terminal)  # does not raise


@given(st.sampled_from(sorted(TERMINAL, key=lambda s: s.value)), st.sampled_from(list(Status)))
def test_terminal_states_never_change(current: Status, new: Status) -> None:
    with pytest.raises(TransitionError, match="terminal state"):
        check_transition(current, new)


def test_pending_to_pending_is_illegal() -> None:
    with pytest.raises(TransitionError, match="illegal transition pending -> pending"):
        check_transition(Status.PENDING, Status.PENDING)


@given(st.lists(st.sampled_from(list(Status)), min_size=1, max_size=6))
def test_any_walk_ends_at_most_once(moves: list[Status]) -> None:
    req = ApprovalRequest.open(
        idempotency_key="k",
        action=export_action(),
        requester=Requester(),
        rule="r",
        required_approvals=1,
        timeout=None,
    )
    changes = 0
    for move in moves:
        try:
            req = req.transition(move)
            changes += 1
        except TransitionError:
            pass
    # The first terminal move sticks; nothing after it changes anything.
    first_terminal = next((m for m in moves if m.terminal), None)
    assert changes == (1 if first_terminal else 0)
    assert req.status == (first_terminal or Status.PENDING)


# ----------------------------------------------------------------- fingerprint


def test_fingerprint_is_stable_across_dataset_and_key_order() -> None:
    a = export_action(inputs=[CUSTOMERS, BUCKET], outputs=[], context={"a": 1, "b": [1, 2]})
    b = export_action(inputs=[BUCKET, CUSTOMERS], outputs=[], context={"b": [1, 2], "a": 1})
    assert a.fingerprint() == b.fingerprint()
    assert a.fingerprint().startswith("sha256:") and len(a.fingerprint()) == 7 + 64


@pytest.mark.parametrize(
    "change",
    [
        {"kind": "copy"},
        {"summary": "Export all customers"},
        {"outputs": [{**BUCKET, "name": "exports/other.csv"}]},
        {"inputs": [{**CUSTOMERS, "classifications": ["pii"]}]},
        {"destination": "s3://elsewhere"},
        {"environment": "staging"},
        {"context": {"rows": 120001}},
        {"context": {"rows": [120000]}},
    ],
)
def test_fingerprint_changes_with_any_part_of_the_action(change: dict[str, object]) -> None:
    assert export_action(**change).fingerprint() != export_action().fingerprint()


def test_request_refuses_a_fingerprint_that_is_not_its_actions() -> None:
    with pytest.raises(ValueError, match="fingerprint does not match"):
        ApprovalRequest(
            idempotency_key="k",
            action=export_action(),
            requester=Requester(),
            fingerprint="sha256:" + "0" * 64,
        )


# ----------------------------------------------------------------- ids and times


def test_uuid7_is_version_7_and_time_ordered() -> None:
    ids = [uuid7() for _ in range(2000)]
    assert all(u.version == 7 and u.variant == uuid.RFC_4122 for u in ids)
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)


def test_open_sets_expiry_from_timeout() -> None:
    now = utcnow()
    req = ApprovalRequest.open(
        idempotency_key="k",
        action=export_action(),
        requester=Requester(),
        rule="r",
        required_approvals=2,
        timeout=timedelta(hours=24),
        now=now,
    )
    assert req.status is Status.PENDING
    assert req.expires_at == now + timedelta(hours=24)
    assert not req.is_expired(now)
    assert req.is_expired(now + timedelta(hours=24))


# ----------------------------------------------------------------- validation


def test_kind_and_classifications_are_normalised() -> None:
    a = parse_action(
        {"kind": " Export ", "inputs": [{**CUSTOMERS, "classifications": ["PII", "pii", "Prod"]}]}
    )
    assert a.kind == "export"
    assert a.inputs[0].classifications == ("pii", "prod")


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        ({}, "kind: Field required"),
        ({"kind": ""}, "kind"),
        ({"kind": "drop table;"}, "kind"),
        ({"kind": "export", "inputs": [{"name": "x"}]}, "inputs.0.namespace: Field required"),
        (
            {"kind": "export", "inputs": [{**CUSTOMERS, "classifications": ["p i i"]}]},
            "classification",
        ),
        ({"kind": "export", "context": {"rows": float("nan")}}, "not a finite number"),
        ({"kind": "export", "colour": "red"}, "colour: Extra inputs are not permitted"),
        (
            {"kind": "export", "context": {"blob": "x" * (MAX_CONTEXT_BYTES + 1)}},
            "the limit is 65536",
        ),
    ],
)
def test_bad_actions_fail_in_one_line_naming_the_field(
    data: dict[str, object], fragment: str
) -> None:
    with pytest.raises(ActionError) as info:
        parse_action(data, source="action file a.json")
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("action file a.json: ")
    assert fragment in message


def test_requester_identities_cover_principal_trigger_and_every_owner() -> None:
    r = Requester(principal="airflow-prod", triggered_by="Dave", owner="carol, Erin@Example.com")
    assert r.identities() == {"airflow-prod", "dave", "carol", "erin@example.com"}
    assert Requester().identities() == frozenset()


def test_asset_str_is_namespace_and_name() -> None:
    assert str(Asset(**CUSTOMERS)) == "postgres://prod:5432::crm.public.customers"


@pytest.mark.parametrize(
    ("status", "on_timeout", "expected"),
    [
        ("allowed", "deny", True),
        (Status.APPROVED, "deny", True),
        ("approved", "allow", True),
        (Status.EXPIRED, "allow", True),
        ("expired", "deny", False),
        (Status.DENIED, "allow", False),
        ("cancelled", "allow", False),
        (Status.PENDING, "allow", False),
        ("pending", "deny", False),
    ],
)
def test_only_allowed_approved_or_expired_under_allow_lets_a_step_go_on(
    status: str, on_timeout: str, expected: bool
) -> None:
    assert proceeds(status, on_timeout) is expected


def test_the_api_requester_is_the_requester_with_the_apis_restrictions() -> None:
    body = GateIn.model_validate(
        {
            "idempotency_key": "k",
            "action": {"kind": "read"},
            "requester": {"job": " j ", "try_number": 2},
        }
    )
    stored = body.requester.with_principal("airflow-prod")
    assert type(stored) is Requester and stored.principal == "airflow-prod"
    assert stored == Requester(job="j", try_number=2, principal="airflow-prod")
    for bad in ({"principal": "alice"}, {"try_number": True}, {"map_index": "3"}, {"colour": 1}):
        with pytest.raises(ValueError):
            RequesterIn.model_validate(bad)
    assert Requester.model_validate({"try_number": "3"}).try_number == 3  # the model is lax
