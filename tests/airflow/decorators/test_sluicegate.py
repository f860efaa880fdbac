"""``@task.sluicegate`` in real Airflow (``dag.test()``) against the real Sluicegate server: a
gated task runs its body once approved, with its arguments, and its result goes downstream; a
denied one never runs its body; one the policy allows runs at once; one whose server cannot be
reached fails closed. And the provider registers the decorator with Airflow.
"""

from __future__ import annotations

import json

import pytest

from tests.airflow.support import _dag, states
from tests.gate_harness import GateHarness


def test_a_gate_whose_server_is_unreachable_fails_closed(
    env: GateHarness, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    import socket

    with socket.socket() as probe:  # a port where nothing listens
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    conn = {"conn_type": "sluicegate", "host": f"http://127.0.0.1:{port}", "password": "sgreq_x"}
    monkeypatch.setenv("AIRFLOW_CONN_SLUICEGATE_DOWN", json.dumps(conn))
    run = _dag("inline_server_down").test()
    printed = "".join(capfd.readouterr())
    assert states(run)["export"] == "failed" and states(run)["receipt"] == "upstream_failed"
    assert not env.ran("inline_server_down.export")
    assert f"cannot reach http://127.0.0.1:{port}" in printed


def test_a_gated_task_runs_its_body_once_approved_with_its_arguments(env: GateHarness) -> None:
    thread = env.reviewer([("alice", "approve", ""), ("bob", "approve", "")])
    run = _dag("inline_pii_export").test()
    thread.join(5)
    assert states(run) == {"extract": "success", "export": "success", "receipt": "success"}
    # the body ran after the resume, with the argument the task was given, and its result
    # went downstream as any @task's does
    assert env.ran("inline_pii_export.receipt:exported 120000 rows")
    req = env.only_request(run.run_id, job="inline_pii_export.export", status="approved")
    assert [d["reviewer"] for d in req["decisions"]] == ["alice", "bob"]
    assert req["action"]["summary"].endswith(f"for the partner, run {run.run_id}")
    assert req["action"]["context"] == {"rows": "120000"}  # the upstream's XCom, rendered


def test_a_gated_task_denied_never_runs_its_body(
    env: GateHarness, capfd: pytest.CaptureFixture[str]
) -> None:
    for mark in env.marks.glob("inline_pii_export.*"):
        mark.unlink()
    thread = env.reviewer([("bob", "deny", "not for this partner")])
    run = _dag("inline_pii_export").test()
    thread.join(5)
    printed = "".join(capfd.readouterr())
    assert states(run)["export"] == "failed"
    assert not env.ran("inline_pii_export.export")
    assert not any(p.name.startswith("inline_pii_export.receipt") for p in env.marks.iterdir())
    assert "denied by bob: not for this partner" in printed


def test_a_gated_task_the_policy_allows_runs_at_once_and_opens_no_request(env: GateHarness) -> None:
    before = env.requests()
    run = _dag("inline_routine_read").test()
    assert states(run) == {"extract": "success", "export": "success", "receipt": "success"}
    assert env.ran("inline_routine_read.receipt:exported 120000 rows")
    assert env.requests() == before


def test_the_provider_registers_task_sluicegate() -> None:
    from airflow.providers_manager import ProvidersManager

    decorators = ProvidersManager().taskflow_decorators
    assert "sluicegate" in decorators
    from sluicegate_airflow.decorators import sluicegate_task

    assert decorators["sluicegate"] is sluicegate_task
