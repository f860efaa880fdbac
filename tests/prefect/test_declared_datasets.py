"""Datasets a Prefect gate declares (Prefect ``Asset`` objects, URI strings, dicts), named the
OpenLineage way, through the real gate: flows run against ``prefect_test_harness`` and the real
Sluicegate server as a subprocess, with a policy that never lets the PII table (``strict``, see
conftest.py)
``crm.public.customers`` be exported. Named ``crm/public/customers`` (or not at all), the
export was let through.

And the idempotency key covers the whole action: a second gate in the same flow run whose
action differs only in its context is asked about again, not answered with the first one's
request.
"""

from __future__ import annotations

from typing import Any

import pytest
from prefect import flow
from prefect.assets import Asset, AssetProperties

from prefect_sluicegate import ApprovalRefused, approval_gate
from tests.gate_harness import GateHarness
from tests.prefect.support import paused_request, start

PARTNER_FILE = "s3://partner-share/exports/customers.csv"

#: The PII table, each way a Prefect flow may declare it.
DECLARED: dict[str, Any] = {
    "prefect-asset": Asset(key="postgres://prod:5432/crm/public/customers"),
    "prefect-asset-with-properties": Asset(
        key="postgresql://prod/crm/public/customers",
        properties=AssetProperties(name="Customers", url="https://catalog.example.com/c"),
    ),
    "uri": "postgres://prod:5432/crm/public/customers",
    "dict-with-uri": {"uri": "postgres://prod:5432/crm/public/customers"},
    "dict-in-another-spelling": {"namespace": "postgresql://prod", "name": "crm/public/customers"},
}


@flow(name="declared-export")
def declared_export(block: str, declared: str) -> str:
    inputs = [UNNAMABLE] if declared == "unnamable" else [DECLARED[declared]]
    answer = approval_gate("export", inputs=inputs, outputs=[PARTNER_FILE], config=block)
    return answer.status


#: A URI of a scheme no OpenLineage naming rule covers: it is not guessed at.
UNNAMABLE = Asset(key="warehouse://prod/crm/public/customers")


@pytest.mark.parametrize("declared", sorted(DECLARED))
def test_the_pii_table_declared_any_prefect_way_is_refused_by_the_policy(
    strict: GateHarness, declared: str
) -> None:
    with pytest.raises(ApprovalRefused) as refused:
        declared_export(strict.name, declared)
    answer = refused.value.answer
    # only crm.public.customers is pii: named any other way, the export was allowed
    assert answer.status == "denied" and answer.rule == "no-pii-leaves"


def test_a_dataset_that_cannot_be_named_stops_the_flow_before_anything_is_asked(
    strict: GateHarness,
) -> None:
    state = declared_export(strict.name, "unnamable", return_state=True)
    assert state.is_failed(), state  # a guessed name would have let the export through

    from sluicegate.exceptions import DatasetError

    with pytest.raises(DatasetError) as err:
        state.result()
    assert str(err.value).startswith(
        "inputs[0]: cannot name 'warehouse://prod/crm/public/customers': no OpenLineage "
        "naming rule is known for the scheme 'warehouse'"
    )
    assert strict.requests("declared-export") == []


@flow(name="two-deploys")
def two_deploys(block: str) -> list[str]:
    """Two gates on one deploy, in one flow run, whose context differs."""
    ids = []
    for rows in (1, 2):
        answer = approval_gate("deploy", context={"rows": rows}, config=block)
        ids.append(answer.id)
    return ids


def test_a_gate_whose_action_changed_is_a_new_request(quick: GateHarness) -> None:
    # Each deploy request expires after 2 s and then goes ahead (the quick policy).
    future = start(two_deploys, block=quick.name)
    first = paused_request(quick, "two-deploys")
    state = future.result(timeout=120)
    assert state.is_completed(), state
    ids = state.result()
    assert ids[0] == first["id"] and ids[1] != ids[0]
    (second,) = [r for r in quick.requests("two-deploys") if r["id"] == ids[1]]
    assert second["action"]["context"] == {"rows": 2}
    run_id = first["requester"]["run_id"]
    assert first["idempotency_key"].startswith(f"prefect:{run_id}:flow:")
    assert second["idempotency_key"].startswith(f"prefect:{run_id}:flow:")
