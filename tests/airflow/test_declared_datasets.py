"""Datasets a gate task declares the Airflow way, in real Airflow (``dag.test()``) against the
real server: an ``Asset`` or an OpenLineage ``Dataset`` inlet of the example policy's PII table
makes the export wait for the stewards (named ``crm/public/customers`` it was let through); an
``AssetAlias`` or a name-only ``Asset`` fails the task, saying why; a retry whose rendered
action changed is asked about again instead of inheriting the first try's request.

The DAGs are in ``dags/declared_datasets.py``.
"""

from __future__ import annotations

import json
import threading
from typing import Any

import pytest

from tests.airflow.support import TASK_EVENTS, _dag, states
from tests.gate_harness import GateHarness

CUSTOMERS = ("postgres://prod:5432", "crm.public.customers")
PARTNER_FILE = ("s3://partner-share", "exports/customers.csv")


def _names(assets: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(a["namespace"], a["name"]) for a in assets]


def _task_events(job: str) -> list[dict[str, Any]]:
    path = TASK_EVENTS
    lines = path.read_text().splitlines() if path.exists() else []
    return [e for e in map(json.loads, filter(None, lines)) if e["job"]["name"] == job]


@pytest.mark.parametrize("dag_id", ["asset_inlet_export", "openlineage_inlet_export"])
def test_a_pii_table_declared_as_an_inlet_makes_the_export_wait_for_the_stewards(
    env: GateHarness, dag_id: str
) -> None:
    thread = env.reviewer([("bob", "deny", "not this partner")])
    run = _dag(dag_id).test()
    thread.join(5)
    # The gate waited (deferred) for a request, which bob denied: the export never ran.
    assert states(run)["approve_export"] == "failed"
    assert not env.ran(f"{dag_id}.export")
    req = env.only_request(run.run_id, job=f"{dag_id}.approve_export", status="denied")
    assert req["rule"] == "pii-export"
    assert _names(req["action"]["inputs"]) == [CUSTOMERS]
    assert _names(req["action"]["outputs"]) == [PARTNER_FILE]
    # Airflow's own OpenLineage events of the gate task name the datasets the same way.
    start = next(e for e in _task_events(f"{dag_id}.approve_export") if e["eventType"] == "START")
    assert _names(start["inputs"]) == [CUSTOMERS]
    assert _names(start["outputs"]) == [PARTNER_FILE]


def test_an_asset_inlet_of_a_gated_taskflow_task_is_named_too(env: GateHarness) -> None:
    thread = env.reviewer([("bob", "deny", "not this partner")])
    run = _dag("inline_asset_export").test()
    thread.join(5)
    assert states(run)["export"] == "failed"
    assert not env.ran("inline_asset_export.export")
    req = env.only_request(run.run_id, job="inline_asset_export.export", status="denied")
    assert req["rule"] == "pii-export"
    assert _names(req["action"]["inputs"]) == [CUSTOMERS]  # postgresql://prod, normalized


@pytest.mark.parametrize(
    ("dag_id", "said"),
    [
        ("alias_inlet_export", "inlets[0]: AssetAlias('customer-extracts') names no dataset"),
        ("named_asset_inlet_export", "inlets[0]: Asset 'customers' has no URI, only a name"),
    ],
)
def test_an_inlet_that_names_no_dataset_fails_the_task_saying_why(
    env: GateHarness, capfd: pytest.CaptureFixture[str], dag_id: str, said: str
) -> None:
    asked = env.gates_opened()
    run = _dag(dag_id).test()
    printed = "".join(capfd.readouterr())
    assert states(run)["approve_export"] == "failed"
    assert not env.ran(f"{dag_id}.export")
    assert "AirflowFailException" in printed  # failed without retrying
    assert f"Sluicegate: {said}" in printed
    assert "pass inputs=/outputs= to the gate" in printed  # and how to declare it instead
    assert env.gates_opened() == asked  # the server was not even asked


def test_a_retry_whose_rendered_action_changed_is_asked_about_again(env: GateHarness) -> None:
    # Try 1 renders {"attempt": "1"}, asks in execute, is approved, then fails after execute
    # (a post_execute); try 2 renders {"attempt": "2"}. Had try 2 reattached to try 1's
    # request, it would have gone on with the approval of an action nobody saw: it must wait
    # for the stewards to approve what it shows them.
    already = {r["id"] for r in env.requests(status="pending")}
    job = "retry_changed_action.approve_export"
    done = threading.Event()

    def decide() -> None:
        approved: set[str] = set()
        while not done.is_set():
            for r in env.requests(job=job, status="pending"):
                if r["id"] in already or r["id"] in approved:
                    continue
                for who in ("alice", "bob"):
                    env.decide(r["id"], who, "approve")
                approved.add(r["id"])
                if r["action"]["context"] == {"attempt": "2"}:
                    return
            done.wait(0.1)

    thread = threading.Thread(target=decide, daemon=True)
    thread.start()
    try:
        run = _dag("retry_changed_action").test()
    finally:
        done.set()
    thread.join(5)
    assert states(run) == {"approve_export": "success", "export": "success"}
    mine = sorted(
        (r for r in env.requests(job=job) if r["requester"]["run_id"] == run.run_id),
        key=lambda r: r["action"]["context"]["attempt"],
    )
    assert [r["action"]["context"] for r in mine] == [{"attempt": "1"}, {"attempt": "2"}]
    # each try went on with the approval of the action it showed, asked for on its own
    assert [r["status"] for r in mine] == ["approved", "approved"]
    assert [[d["reviewer"] for d in r["decisions"]] for r in mine] == [["alice", "bob"]] * 2
    first, second = (r["idempotency_key"] for r in mine)
    assert first != second
    step = f"airflow:retry_changed_action:{run.run_id}:approve_export:-1:"
    assert first.startswith(step) and second.startswith(step)
    # the key ends with the start of the fingerprint of the action it asked about
    for r in mine:
        assert r["fingerprint"].removeprefix("sha256:").startswith(r["idempotency_key"][-16:])


def test_a_gate_the_server_refuses_fails_without_using_up_its_retries(
    env: GateHarness, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    # A token the server does not know (revoked, or mistyped into the connection): a 4xx will
    # be the same on every try, so the task fails on its first try (it has two retries), with
    # the server's reason; an unreachable server or a 5xx still retries (another test).
    conn = {"conn_type": "sluicegate", "host": env.url, "password": "sgreq_revoked"}
    monkeypatch.setenv("AIRFLOW_CONN_SLUICEGATE_REFUSED", json.dumps(conn))
    run = _dag("refused_gate_retries").test()
    printed = "".join(capfd.readouterr())
    assert states(run)["approve_export"] == "failed"
    assert not env.ran("refused_gate_retries.export")
    (ti,) = [t for t in run.get_task_instances() if t.task_id == "approve_export"]
    assert ti.try_number == 1
    assert "could not open the gate" in printed and "HTTP 401" in printed
