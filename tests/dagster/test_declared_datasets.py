"""Datasets named from what Dagster holds about an asset, in real Dagster (``materialize``)
against the real server: the example policy's PII table upstream of a gated export, declared by
its asset key in a ``sluicegate/namespace``, by ``dagster/uri`` or by ``dagster/table_name``,
makes the export wait for the stewards (named ``crm/public/customers`` or from the asset key it
was let through); a partitioned export too, keyed by its partition and its action; a
``dagster/uri`` that names nothing fails the step before anything is asked.

The assets are in ``declared_defs.py``.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.dagster.support import materialize
from tests.gate_harness import GateHarness

pytestmark = pytest.mark.usefixtures("fresh_marks")

CUSTOMERS = ("postgres://prod:5432", "crm.public.customers")


def _names(assets: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(a["namespace"], a["name"]) for a in assets]


def _defs() -> Any:
    from tests.dagster import declared_defs

    return declared_defs


@pytest.mark.parametrize(
    ("upstream", "export"),
    [("by_key", "export_by_key"), ("by_uri", "export_by_uri"), ("by_table", "export_by_table")],
)
def test_an_upstream_pii_table_named_from_dagster_metadata_makes_the_export_wait(
    env: GateHarness, upstream: str, export: str
) -> None:
    d = _defs()
    thread = env.reviewer([("bob", "deny", "not this partner")])
    result = materialize([getattr(d, upstream), getattr(d, export)], raise_on_error=False)
    thread.join(5)
    # The step waited for a request, which bob denied: the body never ran.
    assert not result.success and not env.ran(export)
    req = env.only_request(result.run_id)
    assert req["status"] == "denied" and req["rule"] == "pii-export"
    assert _names(req["action"]["inputs"]) == [CUSTOMERS]
    assert _names(req["action"]["outputs"]) == [("s3://partner-share", f"exports/{export}.csv")]
    # named in the policy's own namespace, its namespace-pinned classify rule applies too
    assert "prod" in req["classifications"]["postgres://prod:5432::crm.public.customers"]


def test_a_partitioned_export_is_keyed_by_its_partition_and_its_action(env: GateHarness) -> None:
    d = _defs()
    thread = env.reviewer([("bob", "deny", "not this partner")])
    result = materialize([d.by_uri, d.partitioned_export], partition_key="eu", raise_on_error=False)
    thread.join(5)
    assert not result.success and not env.ran("partitioned_export")
    req = env.only_request(result.run_id)
    assert req["rule"] == "pii-export"
    assert _names(req["action"]["inputs"]) == [CUSTOMERS]
    assert req["action"]["context"]["partition"] == "eu"
    # the key ends with the start of the fingerprint of the action it asked about
    digest = req["fingerprint"].removeprefix("sha256:")[:16]
    assert req["idempotency_key"] == f"dagster:{result.run_id}:partitioned_export:eu:{digest}"


def test_a_dagster_uri_that_names_nothing_fails_the_step_before_anything_is_asked(
    env: GateHarness,
) -> None:
    from dagster import DagsterEventType

    d = _defs()
    asked = env.gates_opened()
    result = materialize([d.unparsable_export], raise_on_error=False)
    assert not result.success and not env.ran("unparsable_export")
    (failure,) = [e for e in result.all_events if e.event_type == DagsterEventType.STEP_FAILURE]
    message = failure.step_failure_data.error.message
    assert (
        "Sluicegate: asset 'unparsable_export' dagster/uri: cannot name "
        "'partner share/customers.csv': it has no scheme" in message
    )
    assert env.gates_opened() == asked
