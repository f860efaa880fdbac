"""``approval_sensor`` in real Dagster (``instance_for_test``, ``build_sensor_context``) against
the real Sluicegate server: a step gated with ``wait="sensor"`` ends its run at the gate; once
the request is approved, the sensor requests exactly one run (of the assets, or of the whole op
job), whose gate takes up that request; a denied request launches nothing. And a run tagged by
hand with another step's approved request is refused.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from tests.dagster.support import defs, materialize, materialized
from tests.gate_harness import GateHarness

pytestmark = pytest.mark.usefixtures("fresh_marks")


def _tick(instance: Any, sensor: Any) -> Any:
    from dagster import build_sensor_context

    g = defs()
    ctx = build_sensor_context(instance=instance, resources={"sluicegate": g.resource()})
    return sensor.evaluate_tick(ctx)


def _waiting_run(instance: Any) -> Any:
    from dagster import materialize as run

    g = defs()
    result = run(
        [g.customers, g.nightly_export], instance=instance, resources={"sluicegate": g.resource()}
    )
    assert result.success  # the run ends at the gate without failing
    assert "nightly_export" not in materialized(result) and not env_ran("nightly_export")
    return result


def env_ran(name: str) -> bool:
    return Path(os.environ["SLUICEGATE_TEST_MARKS"], name).exists()


def test_the_sensor_launches_exactly_one_run_per_approved_request(env: GateHarness) -> None:
    from dagster import instance_for_test
    from dagster import materialize as run

    g = defs()
    with instance_for_test() as instance:
        first = _waiting_run(instance)
        req = env.only_request(first.run_id)
        assert req["status"] == "pending"
        tags = instance.get_run_by_id(first.run_id).tags
        assert tags["sluicegate/gate"] == "waiting"
        assert json.loads(tags["sluicegate/waiting.nightly_export"])["request_id"] == req["id"]

        assert _tick(instance, g.nightly_sensor).run_requests == []  # nothing while it waits
        env.decide_all(req["id"], [("alice", "approve", ""), ("bob", "approve", "ok")])
        (rr,) = _tick(instance, g.nightly_sensor).run_requests
        assert rr.run_key == req["id"]
        assert rr.tags["sluicegate/request_id"] == req["id"]
        assert rr.tags["sluicegate/approvers"] == "alice,bob"
        assert [k.to_user_string() for k in rr.asset_selection] == ["nightly_export"]

        # Dagster launches it: the gate in the new run checks that request, opens none.
        count = len(env.requests())
        launched = run(
            [g.customers, g.nightly_export],
            selection=rr.asset_selection,
            instance=instance,
            tags=rr.tags,
            resources={"sluicegate": g.resource()},
        )
        assert launched.success and env.ran("nightly_export")
        assert materialized(launched)["nightly_export"]["sluicegate/request_id"] == req["id"]
        assert len(env.requests()) == count

        # The next tick sees the launched run: no second run, the waiting run is settled.
        assert _tick(instance, g.nightly_sensor).run_requests == []
        tags = instance.get_run_by_id(first.run_id).tags
        assert tags["sluicegate/settled.nightly_export"] == "launched"
        assert tags["sluicegate/gate"] == "settled"


def test_the_sensor_launches_nothing_for_a_denied_request(env: GateHarness) -> None:
    from dagster import instance_for_test

    g = defs()
    with instance_for_test() as instance:
        first = _waiting_run(instance)
        req = env.only_request(first.run_id)
        env.decide_all(req["id"], [("alice", "deny", "not this week")])
        assert _tick(instance, g.nightly_sensor).run_requests == []
        tags = instance.get_run_by_id(first.run_id).tags
        assert tags["sluicegate/settled.nightly_export"] == "denied"
        assert _tick(instance, g.nightly_sensor).run_requests == []


def test_the_sensor_of_an_op_job_relaunches_the_job_once_approved(env: GateHarness) -> None:
    from dagster import instance_for_test

    g = defs()
    with instance_for_test() as instance:
        first = g.ops_export_late.execute_in_process(
            instance=instance, resources={"sluicegate": g.resource()}
        )
        assert first.success and not env.ran("ship_late")  # ended at the gate, ship skipped
        req = env.only_request(first.run_id)
        env.decide_all(req["id"], [("alice", "approve", ""), ("bob", "approve", "")])
        (rr,) = _tick(instance, g.late_sensor).run_requests
        assert rr.run_key == req["id"] and rr.asset_selection is None  # the whole job
        again = g.ops_export_late.execute_in_process(
            instance=instance, tags=rr.tags, resources={"sluicegate": g.resource()}
        )
        assert again.success and env.ran("ship_late")
        assert _tick(instance, g.late_sensor).run_requests == []


def test_a_run_naming_another_steps_request_is_refused(env: GateHarness) -> None:
    # Someone tags a run by hand with an approved request opened for a different step: the
    # gate refuses it rather than let the body run on someone else's approval.
    from dagster import DagsterEventType

    g = defs()
    thread = env.reviewer([("alice", "approve", ""), ("bob", "approve", "")])
    ops = g.ops_export.execute_in_process(resources={"sluicegate": g.resource()})
    thread.join(5)
    other = env.only_request(ops.run_id)
    assert other["status"] == "approved"
    env.forget()
    forged = materialize(
        [g.customers, g.nightly_export],
        tags={"sluicegate/request.nightly_export": other["id"]},
        raise_on_error=False,
    )
    assert not forged.success and not env.ran("nightly_export")
    (failure,) = [e for e in forged.all_events if e.event_type == DagsterEventType.STEP_FAILURE]
    assert "it was opened for step 'approve_export'" in failure.step_failure_data.error.message
