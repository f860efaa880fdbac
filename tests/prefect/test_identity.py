"""What the Prefect gate translates, without a server: datasets through the core's one
conversion (a Prefect ``Asset`` by its key), the idempotency key, and a refusal carrying the
core gate's outcome. The gate against real Prefect and a real server: test_gate.py."""

from __future__ import annotations

import pickle
from datetime import datetime, timezone

import pytest
from prefect.assets import Asset, AssetProperties

from prefect_sluicegate import ApprovalRefused, idempotency_key
from prefect_sluicegate.identity import assets
from sluicegate.datasets import to_asset
from sluicegate.exceptions import DatasetError
from sluicegate.gate import GateOutcome, OutcomeKind
from sluicegate.model import Action
from sluicegate.wire import RequestOut

CUSTOMERS = {"namespace": "postgres://prod:5432", "name": "crm.public.customers"}


def test_a_prefect_asset_is_named_as_its_key_uri_is() -> None:
    uri = "postgresql://prod/crm/public/customers"
    asset = Asset(key=uri, properties=AssetProperties(name="Customers"))
    assert assets([asset], where="inputs") == [to_asset(uri)] == [CUSTOMERS]


def test_every_declaration_goes_through_the_core_conversion_and_a_lone_one_is_a_list() -> None:
    declared = [
        "postgres://prod:5432/crm/public/customers",
        {"uri": "postgres://prod:5432/crm/public/customers"},
        {"namespace": "postgresql://prod", "name": "crm/public/customers"},
    ]
    assert assets(declared, where="inputs") == [CUSTOMERS] * 3
    assert assets(Asset(key="s3://partner-share/x.csv"), where="outputs") == [
        {"namespace": "s3://partner-share", "name": "x.csv"}
    ]
    assert assets((), where="inputs") == []


@pytest.mark.parametrize(
    ("declared", "message"),
    [
        (
            Asset(key="warehouse://prod/crm/public/customers"),
            "inputs[1]: cannot name 'warehouse://prod/crm/public/customers'",
        ),
        (object(), "inputs[1]: cannot name"),
    ],
    ids=["unknown-scheme", "not-a-dataset"],
)
def test_what_cannot_be_named_fails_closed_naming_where(declared: object, message: str) -> None:
    with pytest.raises(DatasetError) as err:
        assets([CUSTOMERS, declared], where="inputs")
    assert str(err.value).startswith(message), err.value


def test_the_key_names_the_flow_run_the_step_and_the_whole_action() -> None:
    action = Action.model_validate({"kind": "export", "inputs": [CUSTOMERS]})
    key = idempotency_key("0197-run", "flow", action)
    digest = action.fingerprint().removeprefix("sha256:")[:16]
    assert key == f"prefect:0197-run:flow:{digest}"
    assert idempotency_key("0197-run", "flow", action.model_dump()) == key
    changed = action.model_copy(update={"context": {"rows": 2}})
    assert idempotency_key("0197-run", "flow", changed) != key


def _denied() -> RequestOut:
    now = datetime.now(timezone.utc).isoformat()
    return RequestOut.model_validate(
        {
            "id": "0197-req",
            "status": "denied",
            "rule": "pii-export",
            "fingerprint": "sha256:" + "0" * 64,
            "created_at": now,
            "decisions": [
                {
                    "reviewer": "bob",
                    "verdict": "deny",
                    "comment": "not with this partner",
                    "channel": "api",
                    "decided_at": now,
                }
            ],
        }
    )


def test_a_refusal_carries_the_gates_outcome_and_its_one_line() -> None:
    outcome = GateOutcome.of(_denied())
    refused = ApprovalRefused(outcome)
    assert refused.outcome is outcome and refused.answer is outcome.request
    assert outcome.kind is OutcomeKind.DENIED and outcome.denied_by == "bob"
    assert str(refused) == f"Sluicegate: {outcome.message}"
    assert "was denied by bob: not with this partner" in str(refused)
    # Prefect may pickle a failed state's exception: it comes back whole
    again = pickle.loads(pickle.dumps(refused))
    assert (str(again), again.outcome, again.answer) == (str(refused), outcome, outcome.request)
    # built from a bare answer too (its public signature before the core gate)
    assert str(ApprovalRefused(_denied())) == str(refused)
