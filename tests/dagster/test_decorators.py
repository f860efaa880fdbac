"""``@approval_required`` and ``approval_gate_op`` in real Dagster (``materialize``,
``execute_in_process``, ``execute_job``) against the real Sluicegate server as a subprocess. A
reviewer thread decides through the API the way a person would, once the request shows up.
Covered: a step that waits in its run (approved, denied, expired, allowed at once, refused by
the server, its server unreachable, its owner refused as a reviewer, the review link in the
run's log), the op forms, a re-execution that reattaches, the gates' OpenLineage events as
children of dagster-openlineage's runs, what the decorator refuses before anything is asked,
and the example definitions.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import pytest

from sluicegate.store import Store
from tests.core.support.serverproc import expiring_server, free_port
from tests.dagster.support import defs, materialize, materialized
from tests.gate_harness import GateHarness

pytestmark = pytest.mark.usefixtures("fresh_marks")


# --------------------------------------------------------------------------- waiting in the step


def test_approved_by_two_stewards_the_export_materializes_with_the_approval(
    env: GateHarness,
) -> None:
    g = defs()
    thread = env.reviewer([("alice", "approve", ""), ("bob", "approve", "contract checked")])
    result = materialize([g.customers, g.customers_export, g.export_receipt])
    thread.join(5)
    assert result.success
    assert env.ran("customers_export") and env.ran("export_receipt")
    md = materialized(result)["customers_export"]
    req = env.only_request(result.run_id)
    assert req["status"] == "approved"
    assert md["sluicegate/request_id"] == req["id"]
    assert md["sluicegate/approvers"] == "alice, bob"
    assert md["sluicegate/approval"]["requestId"] == req["id"]
    assert [d["reviewer"] for d in md["sluicegate/approval"]["decisions"]] == ["alice", "bob"]
    # The action came from what Dagster holds: tag, owners, upstream table, metadata, kinds.
    action = req["action"]
    assert action["kind"] == "export" and action["destination"] == "s3://partner-share"
    assert [(i["namespace"], i["name"]) for i in action["inputs"]] == [
        ("postgres://prod:5432", "crm.public.customers")
    ]
    assert action["context"]["kinds"] == ["s3"]
    requester = req["requester"]
    assert requester["orchestrator"] == "dagster" and requester["step"] == "customers_export"
    assert requester["owner"] == "carol@example.com"  # so carol cannot approve it
    digest = req["fingerprint"].removeprefix("sha256:")[:16]  # the action's, as asked about
    assert req["idempotency_key"] == f"dagster:{result.run_id}:customers_export:{digest}"


def test_the_review_link_is_in_the_runs_log_while_the_step_waits(env: GateHarness) -> None:
    from dagster import DagsterInstance

    g = defs()
    seen: list[str] = []

    def read_the_log(request: dict[str, Any]) -> None:
        # The request is pending on the server a moment before the step has written its log
        # line: read the run's log as a user would, again, until the line is there (or 10 s).
        (run,) = instance.get_runs()
        deadline = time.monotonic() + 10
        while not seen and time.monotonic() < deadline:
            logged = [e.user_message for e in instance.all_logs(run.run_id)]
            seen.extend(m for m in logged if "review at" in m and request["id"] in m)
            time.sleep(0.05)

    with DagsterInstance.ephemeral() as instance:
        thread = env.reviewer(
            [("alice", "approve", ""), ("bob", "approve", "")], before=read_the_log
        )
        result = materialize([g.customers, g.customers_export], instance=instance)
        thread.join(5)
    assert result.success
    # logged when the gate opened, before anyone decided: a reviewer can be sent the link
    assert len(seen) == 1 and "is still pending" in seen[0], seen


def test_the_owner_of_the_asset_cannot_approve_it(env: GateHarness) -> None:
    g = defs()
    os.environ["SLUICEGATE_TEST_MAX_WAIT"] = "3"
    try:
        env.token("carol", "review")
        got: dict[str, Any] = {}

        def carol_tries(req: dict[str, Any]) -> None:
            assert req["requester"]["step"] == "customers_export"
            got["r"] = env.post_decision(req["id"], "carol", "approve")

        thread = env.reviewer([], before=carol_tries)
        result = materialize([g.customers, g.customers_export], raise_on_error=False)
        thread.join(5)
    finally:
        os.environ["SLUICEGATE_TEST_MAX_WAIT"] = "60"
    assert got["r"].status_code == 403 and "owner" in got["r"].json()["detail"]
    assert not result.success and not env.ran("customers_export")


def test_denied_the_step_fails_with_the_comment_and_nothing_downstream_runs(
    env: GateHarness,
) -> None:
    from dagster import DagsterEventType

    g = defs()
    thread = env.reviewer([("bob", "deny", "no contract with this partner")])
    result = materialize([g.customers, g.customers_export, g.export_receipt], raise_on_error=False)
    thread.join(5)
    assert not result.success
    assert not env.ran("customers_export") and not env.ran("export_receipt")
    assert "customers_export" not in materialized(result)
    (failure,) = [e for e in result.all_events if e.event_type == DagsterEventType.STEP_FAILURE]
    error = failure.step_failure_data.error
    assert "denied by bob: no contract with this partner" in error.message
    assert failure.step_failure_data.user_failure_data.metadata["sluicegate/status"].value == (
        "denied"
    )
    started = {e.step_key for e in result.all_events if e.event_type == DagsterEventType.STEP_START}
    assert "export_receipt" not in started and "export_receipt" not in materialized(result)


def test_a_policy_allowed_asset_never_waits_and_opens_no_request(env: GateHarness) -> None:
    g = defs()
    before = env.requests()
    result = materialize([g.orders_summary])
    assert result.success and env.ran("orders_summary")
    assert env.requests() == before  # nothing opened, so nobody was notified
    md = materialized(result)["orders_summary"]
    assert md["sluicegate/status"] == "allowed" and md["sluicegate/rule"] == "routine-reads"
    assert "sluicegate/request_id" not in md
    assert result.output_for_node("orders_summary") == env.url


def test_an_unreachable_server_fails_closed_and_the_body_never_runs(env: GateHarness) -> None:
    from dagster import DagsterEventType

    g = defs()
    os.environ["SLUICEGATE_TEST_URL"] = f"http://127.0.0.1:{free_port()}"
    os.environ["SLUICEGATE_TEST_MAX_WAIT"] = "1"
    try:
        result = materialize([g.customers, g.customers_export], raise_on_error=False)
    finally:
        os.environ["SLUICEGATE_TEST_URL"] = env.url
        os.environ["SLUICEGATE_TEST_MAX_WAIT"] = "60"
    assert not result.success and not env.ran("customers_export")
    (failure,) = [e for e in result.all_events if e.event_type == DagsterEventType.STEP_FAILURE]
    assert "could not open the gate" in failure.step_failure_data.error.message


def test_a_gate_the_server_refuses_fails_without_using_up_the_step_retries(
    env: GateHarness,
) -> None:
    from dagster import DagsterEventType

    # A token the server does not know (revoked, mistyped): every try would be refused alike
    # (HTTP 401), so the step fails once although its retry policy allows two more tries.
    g = defs()
    os.environ["SLUICEGATE_TEST_TOKEN"] = "sgreq_revoked"
    try:
        result = materialize([g.customers, g.retried_export], raise_on_error=False)
    finally:
        os.environ["SLUICEGATE_TEST_TOKEN"] = env.tokens["dagster-prod"]
    assert not result.success and not env.ran("retried_export")
    kinds = [e.event_type for e in result.all_events if e.step_key == "retried_export"]
    assert DagsterEventType.STEP_UP_FOR_RETRY not in kinds
    (failure,) = [e for e in result.all_events if e.event_type == DagsterEventType.STEP_FAILURE]
    assert "could not open the gate" in failure.step_failure_data.error.message
    assert "HTTP 401" in failure.step_failure_data.error.message


def test_the_op_form_gates_the_job_until_approved(env: GateHarness) -> None:
    from dagster import DagsterInstance

    g = defs()
    thread = env.reviewer([("alice", "approve", ""), ("bob", "approve", "")])
    result = g.ops_export.execute_in_process(
        instance=DagsterInstance.ephemeral(), resources={"sluicegate": g.resource()}
    )
    thread.join(5)
    assert result.success and env.ran("ship")
    req = env.only_request(result.run_id)
    assert req["status"] == "approved" and req["requester"]["step"] == "approve_export"
    (out,) = [
        e for e in result.all_events
        if e.step_key == "approve_export" and e.event_type_value == "STEP_OUTPUT"
    ]  # fmt: skip
    assert out.event_specific_data.metadata["sluicegate/request_id"].value == req["id"]


@pytest.mark.parametrize("on_timeout", ["allow", "deny"])
def test_an_expired_request_ends_as_its_rule_says(
    env: GateHarness, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, on_timeout: str
) -> None:
    from dagster import DagsterEventType

    server, db = expiring_server(tmp_path, on_timeout)
    try:
        with Store(db) as store:
            monkeypatch.setenv(
                "SLUICEGATE_TEST_TOKEN", store.create_token("dagster-prod", "request")
            )
        monkeypatch.setenv("SLUICEGATE_TEST_URL", server.url)
        g = defs()
        result = materialize([g.customers, g.customers_export], raise_on_error=False)
    finally:
        server.stop()
    if on_timeout == "allow":  # nobody decided; the rule lets the step go on at its deadline
        assert result.success and env.ran("customers_export")
        assert materialized(result)["customers_export"]["sluicegate/status"] == "expired"
    else:
        assert not result.success and not env.ran("customers_export")
        (failure,) = [e for e in result.all_events if e.event_type == DagsterEventType.STEP_FAILURE]
        assert "expired" in failure.step_failure_data.error.message


def test_the_decorator_gates_a_plain_op_with_its_inputs_kept(env: GateHarness) -> None:
    from dagster import DagsterInstance

    g = defs()
    thread = env.reviewer([("alice", "approve", ""), ("bob", "approve", "")])
    result = g.ops_decorated.execute_in_process(
        instance=DagsterInstance.ephemeral(), resources={"sluicegate": g.resource()}
    )
    thread.join(5)
    assert result.success and env.ran("ship_decorated")
    assert result.output_for_node("ship_decorated") == 3  # its input passed through the gate
    req = env.only_request(result.run_id)
    assert req["action"]["kind"] == "export"  # from the op's tag
    assert req["action"]["context"]["op"] == "ship_decorated"


# --------------------------------------------------------------------------- re-execution


def test_a_re_execution_reattaches_to_the_same_request(env: GateHarness) -> None:
    from dagster import ReexecutionOptions, execute_job, instance_for_test, reconstructable

    g = defs()
    job = reconstructable(g.reconstruct_export_job)
    os.environ["SLUICEGATE_TEST_MAX_WAIT"] = "1"
    try:
        with instance_for_test() as instance:
            first = execute_job(job, instance=instance, raise_on_error=False)
            assert not first.success and not env.ran("customers_export")
            req = env.only_request(first.run_id)
            assert req["status"] == "pending"  # still waiting when the step gave up
            env.decide_all(req["id"], [("alice", "approve", ""), ("bob", "approve", "")])
            options = ReexecutionOptions.from_failure(first.run_id, instance)
            with execute_job(job, instance=instance, reexecution_options=options) as again:
                assert again.success
                assert again.dagster_run.root_run_id == first.run_id
                md = materialized(again)["customers_export"]
    finally:
        os.environ["SLUICEGATE_TEST_MAX_WAIT"] = "60"
    assert env.ran("customers_export") and env.ran("export_receipt")
    assert md["sluicegate/request_id"] == req["id"]  # the same request, no second one
    keyed = [r for r in env.requests() if r["idempotency_key"] == req["idempotency_key"]]
    assert len(keyed) == 1


# --------------------------------------------------------------------------- lineage


def dagster_openlineage_run(instance: Any, job: str) -> dict[str, Any]:
    """The ``{namespace, name}`` and ``runId`` of the OpenLineage run dagster-openlineage
    (0.2.1) emits for ``job`` (an asset's key, or a Dagster job's name) in ``instance``'s run,
    as a ``parent`` facet names it.

    dagster-openlineage's own ``openlineage_sensor(include_asset_events=True)`` ticks once over
    the instance's event log (an ephemeral instance's: the sensor refuses a run-sharded one)
    and emits, through its ``OpenLineageAdapter`` (the one its event log storage wrapper uses
    for assets too), into openlineage-python's file transport, read back here. The sensor has
    no parameter for its client: its module's ``_ADAPTER``, built at import from the process's
    OpenLineage configuration, is swapped for one on that transport while it ticks.
    """
    from unittest import mock

    from dagster import build_sensor_context
    from dagster_openlineage import OpenLineageAdapter, openlineage_sensor
    from dagster_openlineage import sensor as ol_sensor
    from dagster_openlineage.emitter import OpenLineageEmitter
    from openlineage.client import OpenLineageClient
    from openlineage.client.transport.file import FileConfig, FileTransport

    with tempfile.TemporaryDirectory() as work:
        path = Path(work) / "dagster-openlineage.jsonl"
        client = OpenLineageClient(transport=FileTransport(FileConfig(str(path), append=True)))
        adapter = OpenLineageAdapter(emitter=OpenLineageEmitter(client=client))
        sensor = openlineage_sensor(include_asset_events=True, record_filter_limit=10_000)
        with mock.patch.object(ol_sensor, "_ADAPTER", adapter), warnings.catch_warnings():
            # 0.2.1 reads the event log with Dagster's deprecated get_event_records.
            warnings.filterwarnings("ignore", r".*get_event_records", category=UserWarning)
            warnings.filterwarnings("ignore", r".*get_event_records", category=DeprecationWarning)
            sensor.evaluate_tick(build_sensor_context(instance=instance))
        events = [json.loads(line) for line in path.read_text().splitlines()]
    (started,) = [e for e in events if e["eventType"] == "START" and e["job"]["name"] == job]
    return {
        "run": {"runId": started["run"]["runId"]},
        "job": {"namespace": started["job"]["namespace"], "name": started["job"]["name"]},
    }


def parent_of(event: dict[str, Any]) -> dict[str, Any]:
    """The run and job a gate event's ``parent`` facet names (their ids only)."""
    parent = event["run"]["facets"]["parent"]
    return {
        "run": {"runId": parent["run"]["runId"]},
        "job": {"namespace": parent["job"]["namespace"], "name": parent["job"]["name"]},
    }


def gate_events(env: GateHarness, run_id: str, count: int) -> list[dict[str, Any]]:
    """The server's events of the gates whose parent is Dagster run ``run_id``, validated."""
    from tests.core.support.lineage_schema import validate_event

    events = env.gate_events(lambda e: run_id in json.dumps(e), lambda got: len(got) >= count)
    for event in events:
        validate_event(event)
    return events


def test_an_approved_assets_gate_is_a_child_of_the_assets_openlineage_run(env: GateHarness) -> None:
    from dagster import DagsterInstance

    g = defs()
    instance = DagsterInstance.ephemeral()
    thread = env.reviewer([("alice", "approve", ""), ("bob", "approve", "")])
    result = materialize([g.customers, g.customers_export], instance=instance)
    thread.join(5)
    req = env.only_request(result.run_id)
    assert req["requester"]["job"] == "customers_export"  # the asset key, not __ASSET_JOB
    gate = [e for e in gate_events(env, result.run_id, 4) if req["lineage_run_id"] in str(e)]
    assert [e["eventType"] for e in gate] == ["START", "OTHER", "OTHER", "COMPLETE"]
    assert gate[0]["job"]["name"] == "customers_export.approval_gate"
    assert parent_of(gate[0]) == dagster_openlineage_run(instance, "customers_export")


def test_an_allowed_asset_shows_the_rule_and_names_itself_in_its_gate_events(
    env: GateHarness,
) -> None:
    from dagster import DagsterInstance

    g = defs()
    instance = DagsterInstance.ephemeral()
    result = materialize([g.orders_summary], instance=instance)
    assert result.success
    # The policy's own allow: its status and rule on the materialization, nothing to review
    # (no request, no facet: the gate's OpenLineage events below carry it), no log line.
    ours = {k: v for k, v in materialized(result)["orders_summary"].items() if "sluicegate" in k}
    assert ours == {"sluicegate/status": "allowed", "sluicegate/rule": "routine-reads"}
    logged = [e.user_message for e in instance.all_logs(result.run_id)]
    assert not [m for m in logged if m.startswith("Sluicegate:")]
    gate = gate_events(env, result.run_id, 2)
    assert [e["eventType"] for e in gate] == ["START", "COMPLETE"]
    facet = gate[0]["run"]["facets"]["sluicegate_approval"]
    assert facet["status"] == "allowed"
    assert facet["requester"] == {
        "orchestrator": "dagster",
        "job": "orders_summary",
        "runId": result.run_id,
        "principal": "dagster-prod",
    }
    assert parent_of(gate[0]) == dagster_openlineage_run(instance, "orders_summary")


def test_an_op_gate_names_its_step_and_is_a_child_of_the_dagster_runs_openlineage_run(
    env: GateHarness,
) -> None:
    from dagster import DagsterInstance

    g = defs()
    instance = DagsterInstance.ephemeral()
    result = g.ops_read.execute_in_process(
        instance=instance, resources={"sluicegate": g.resource()}
    )
    assert result.success
    (out,) = [
        e for e in result.all_events
        if e.step_key == "check_orders" and e.event_type_value == "STEP_OUTPUT"
    ]  # fmt: skip
    assert out.event_specific_data.metadata["sluicegate/status"].value == "allowed"
    gate = gate_events(env, result.run_id, 2)
    assert [e["eventType"] for e in gate] == ["START", "COMPLETE"]
    facet = gate[0]["run"]["facets"]["sluicegate_approval"]
    assert facet["requester"]["job"] == "ops_read.check_orders"
    assert parent_of(gate[0]) == dagster_openlineage_run(instance, "ops_read")


# --------------------------------------------------------------------------- definitions


def test_the_sensor_form_on_an_asset_that_must_output_is_refused_before_anything_opens(
    env: GateHarness,
) -> None:
    from dagster import DagsterEventType, asset

    from dagster_sluicegate import approval_required

    @asset(tags={"sluicegate/action": "export"})
    @approval_required(wait="sensor")
    def must_output() -> int:
        return 1

    before = env.requests()
    result = materialize([must_output], raise_on_error=False)
    assert not result.success and env.requests() == before
    (failure,) = [e for e in result.all_events if e.event_type == DagsterEventType.STEP_FAILURE]
    assert "output_required=False" in failure.step_failure_data.error.message


def test_an_asset_without_an_action_fails_closed_naming_the_tag(env: GateHarness) -> None:
    from dagster import DagsterEventType, asset

    from dagster_sluicegate import approval_required

    @asset
    @approval_required
    def untagged() -> int:
        return 1

    result = materialize([untagged], raise_on_error=False)
    assert not result.success
    (failure,) = [e for e in result.all_events if e.event_type == DagsterEventType.STEP_FAILURE]
    assert "tag the asset 'sluicegate/action'" in failure.step_failure_data.error.message


def test_an_action_the_server_would_refuse_fails_once_before_anything_is_asked(
    env: GateHarness,
) -> None:
    from dagster import DagsterEventType, RetryPolicy, asset

    from dagster_sluicegate import approval_required

    @asset(retry_policy=RetryPolicy(max_retries=2))
    @approval_required(kind="export now!")
    def badly_named() -> int:
        return 1

    before = env.requests()
    result = materialize([badly_named], raise_on_error=False)
    assert not result.success and env.requests() == before
    kinds = [e.event_type for e in result.all_events if e.step_key == "badly_named"]
    assert DagsterEventType.STEP_UP_FOR_RETRY not in kinds  # a retry would be refused alike
    (failure,) = [e for e in result.all_events if e.event_type == DagsterEventType.STEP_FAILURE]
    assert "Sluicegate: action: kind: kind 'export now!' must be" in (
        failure.step_failure_data.error.message
    )


def test_a_wait_that_is_neither_step_nor_sensor_is_a_clear_error() -> None:
    from dagster_sluicegate import approval_required

    with pytest.raises(ValueError, match="wait must be 'step' or 'sensor', not 'later'"):
        approval_required(wait="later")  # type: ignore[call-overload]


def test_the_example_definitions_load_and_gate_the_export(
    env: GateHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    import importlib.util

    from dagster import Definitions
    from dagster import materialize as run

    path = Path(__file__).resolve().parents[2] / "examples" / "dagster" / "definitions.py"
    spec = importlib.util.spec_from_file_location("example_dagster_definitions", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    Definitions.validate_loadable(module.defs)
    monkeypatch.setenv("SLUICEGATE_SERVER_URL", env.url)
    monkeypatch.setenv("SLUICEGATE_TOKEN", env.tokens["dagster-prod"])
    thread = env.reviewer([("alice", "approve", ""), ("bob", "approve", "")])
    resources = module.defs.resources
    result = run([module.customers, module.customers_export], resources=resources)
    thread.join(5)
    assert result.success
    assert materialized(result)["customers_export"]["sluicegate/approvers"] == "alice, bob"
    assert [s.name for s in module.defs.sensors or []] == ["partner_export_approvals"]
