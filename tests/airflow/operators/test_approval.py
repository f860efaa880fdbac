"""``ApprovalGateOperator`` in real Airflow: ``dag.test()`` on a migrated SQLite AIRFLOW_HOME,
against the real Sluicegate server as a subprocess (the suite's ``env``). A reviewer thread
decides through the API the way a person would, once the request shows up; the DAG resumes by
itself (the trigger's long poll). Covered: approved, denied, skipped and expired gates, the
owner refused as a reviewer, allowed actions that wait for nothing, templates rendered as
Airflow renders them (and what ``pre_execute`` changed after), reattaching on a resume or a
retry, a server unreachable or restarting, the gate's facets in Airflow's OpenLineage events,
``default_args``, the example DAG and the README's walkthrough through the real CLIs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from sluicegate.store import Store
from tests.airflow.support import TASK_EVENTS, _dag, states
from tests.core.support.serverproc import expiring_server
from tests.gate_harness import PATIENCE, GateHarness


def test_approved_by_two_stewards_the_export_runs(env: GateHarness) -> None:
    thread = env.reviewer([("alice", "approve", ""), ("bob", "approve", "contract checked")])
    run = _dag("pii_export").test()
    thread.join(5)
    assert states(run) == {
        "extract": "success",
        "approve_export": "success",
        "export": "success",
    }
    assert env.ran("pii_export.export")
    (req,) = env.requests(job="pii_export.approve_export", status="approved")
    assert [d["reviewer"] for d in req["decisions"]] == ["alice", "bob"]
    assert req["requester"]["owner"] == "carol" and req["requester"]["orchestrator"] == "airflow"
    # dag.test() records its run as triggered by the user "dag_test" (triggering_user_name)
    assert req["requester"]["triggered_by"] == "dag_test"
    assert req["idempotency_key"].startswith("airflow:pii_export:")
    # the reviewers read the action as rendered for this run
    action = req["action"]
    assert action["summary"] == f"export crm.public.customers for the partner, run {run.run_id}"
    assert action["context"] == {"rows": 120000, "dag": "pii_export"}
    assert action["destination"] == "s3://partner-share/pii_export/"


def _events(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_the_approval_reaches_airflows_openlineage_events_and_the_gate_points_at_its_task(
    env: GateHarness,
) -> None:
    from tests.core.support.lineage_schema import validate_event

    thread = env.reviewer([("alice", "approve", ""), ("bob", "approve", "ok")])
    run = _dag("pii_export").test()
    thread.join(5)
    assert states(run)["export"] == "success"
    (req,) = [
        r
        for r in env.requests(job="pii_export.approve_export", status="approved")
        if f":{run.run_id}:approve_export:-1:" in r["idempotency_key"]
    ]
    # Airflow's own COMPLETE event of the gate task carries the approval facet.
    task_done = [
        e
        for e in _events(TASK_EVENTS)
        if e["job"]["name"] == "pii_export.approve_export"
        and e["eventType"] == "COMPLETE"
        and "sluicegate_approval" in e["run"]["facets"]
        and e["run"]["facets"]["sluicegate_approval"].get("requestId") == req["id"]
    ]
    assert len(task_done) == 1
    facet = task_done[0]["run"]["facets"]["sluicegate_approval"]
    assert [d["reviewer"] for d in facet["decisions"]] == ["alice", "bob"]
    assert [i["name"] for i in task_done[0]["inputs"]] == ["crm.public.customers"]
    # The gate's own events (sent by the server) name that task run as their parent.
    gate = env.gate_events(
        lambda e: e["run"]["runId"] == req["lineage_run_id"], lambda got: len(got) >= 4
    )
    assert [e["eventType"] for e in gate] == ["START", "OTHER", "OTHER", "COMPLETE"]
    parent = gate[0]["run"]["facets"]["parent"]
    assert parent["run"]["runId"] == task_done[0]["run"]["runId"]
    assert parent["job"]["name"] == "pii_export.approve_export"
    for event in gate:
        validate_event(event)


def test_denied_the_gate_fails_with_the_comment_and_the_export_never_runs(
    env: GateHarness, capfd: pytest.CaptureFixture[str]
) -> None:
    (env.marks / "pii_export.export").unlink(missing_ok=True)
    thread = env.reviewer([("bob", "deny", "no contract with this partner")])
    run = _dag("pii_export").test()
    thread.join(5)
    printed = "".join(capfd.readouterr())
    assert states(run)["approve_export"] == "failed"
    assert states(run)["export"] in ("upstream_failed", "None")
    assert not env.ran("pii_export.export")
    assert "AirflowFailException" in printed  # failed without retrying
    assert "denied by bob: no contract with this partner" in printed


def test_fail_on_deny_false_skips_downstream(env: GateHarness) -> None:
    thread = env.reviewer([("alice", "deny", "not today")])
    run = _dag("pii_export_skip_on_deny").test()
    thread.join(5)
    assert states(run)["approve_export"] == "skipped"
    assert states(run)["export"] == "skipped"
    assert not env.ran("pii_export_skip_on_deny.export")


def test_the_dag_owner_a_steward_cannot_approve_its_own_gate(env: GateHarness) -> None:
    # pii_export's owner is carol, a data steward: the gate's request names her as its owner,
    # so her approval is refused and two other stewards must decide.
    refused: dict[str, Any] = {}

    def carol_first(req: dict[str, Any]) -> None:
        r = env.post_decision(req["id"], "carol", "approve")
        refused.update(status=r.status_code, body=r.json())

    thread = env.reviewer([("alice", "approve", ""), ("bob", "approve", "")], before=carol_first)
    run = _dag("pii_export").test()
    thread.join(5)
    assert refused["status"] == 403, refused
    assert refused["body"] == {
        "error": "forbidden",
        "detail": "'carol' cannot approve this request: is the job owner",
    }
    assert states(run)["export"] == "success"
    req = env.only_request(run.run_id, job="pii_export.approve_export", status="approved")
    assert [d["reviewer"] for d in req["decisions"]] == ["alice", "bob"]


@pytest.mark.parametrize("on_timeout", ["allow", "deny"])
def test_an_expired_request_ends_as_its_rule_says(
    env: GateHarness,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
    on_timeout: str,
) -> None:
    # Nobody decides; the rule's timeout (1 s here) ends the request, and the waiting gate
    # resumes with the rule's outcome.
    server, db = expiring_server(tmp_path, on_timeout)
    try:
        with Store(db) as store:
            token = store.create_token("airflow-prod", "request")
        conn = {"conn_type": "sluicegate", "host": server.url, "password": token}
        monkeypatch.setenv("AIRFLOW_CONN_SLUICEGATE_DEFAULT", json.dumps(conn))
        (env.marks / "pii_export.export").unlink(missing_ok=True)
        run = _dag("pii_export").test()
        printed = "".join(capfd.readouterr())
        r = httpx.get(
            f"{server.url}/api/v1/requests",
            params={"job": "pii_export.approve_export"},
            headers={"Authorization": f"Bearer {token}"},
        )
    finally:
        server.stop()
    ((req,),) = [r.json()["items"]]
    assert req["status"] == "expired" and req["decisions"] == []
    if on_timeout == "allow":
        assert states(run)["approve_export"] == "success"
        assert env.ran("pii_export.export")
    else:
        assert states(run)["approve_export"] == "failed"
        assert not env.ran("pii_export.export")
        assert "AirflowFailException" in printed  # failed without retrying
        assert "expired" in printed


def test_a_policy_allowed_action_waits_for_nothing_and_opens_no_request(env: GateHarness) -> None:
    before = env.requests()
    started = time.monotonic()
    run = _dag("routine_read").test()
    assert states(run)["approve_export"] == "success" and env.ran("routine_read.export")
    assert env.requests() == before  # nothing opened, so nobody was notified
    # a gate that waited would wait for the rule's 24 h: this bound only allows a slow machine
    assert time.monotonic() - started < PATIENCE


def test_an_allowed_gate_asks_the_server_once_per_run(env: GateHarness) -> None:
    # The gate asks in execute, once: one attempt in the audit log per run.
    run = _dag("routine_read").test()
    assert states(run)["approve_export"] == "success"
    assert env.audit("routine_read.approve_export", run.run_id) == ["policy.allowed"]


def test_an_allowed_gates_facet_in_airflows_events_names_the_task_that_asked(
    env: GateHarness,
) -> None:
    # A gate the policy allowed opens no request; the approval facet on Airflow's own COMPLETE
    # event of the gate task still names who asked (it named {"orchestrator": "api"} before).
    seen = len(_events(TASK_EVENTS)) if TASK_EVENTS.exists() else 0
    run = _dag("routine_read").test()
    assert states(run)["approve_export"] == "success"
    deadline = time.monotonic() + PATIENCE
    while True:
        done = [
            e
            for e in _events(TASK_EVENTS)[seen:]
            if e["job"]["name"] == "routine_read.approve_export" and e["eventType"] == "COMPLETE"
        ]
        if done or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    (event,) = done
    facet = event["run"]["facets"]["sluicegate_approval"]
    assert (facet["status"], facet["rule"]) == ("allowed", "routine-reads")
    assert facet["requester"] == {
        "orchestrator": "airflow",
        "job": "routine_read.approve_export",
        "runId": run.run_id,
        "owner": "carol",
        "triggeredBy": "dag_test",
        "principal": "airflow-prod",
    }


def test_a_templated_kind_and_datasets_reach_the_policy_rendered(env: GateHarness) -> None:
    # kind="{{ params.kind }}", inputs=["postgres://prod:5432/crm/public/{{ params.table }}"],
    # outputs named "exports/{{ ds }}/customers.csv": the policy and the reviewers see them
    # rendered, and named after rendering (the input is then the PII table: a request).
    from datetime import datetime, timezone

    thread = env.reviewer([("alice", "deny", "not this week")])
    run = _dag("templated_export").test(logical_date=datetime(2026, 3, 1, tzinfo=timezone.utc))
    thread.join(5)
    assert states(run)["approve_export"] == "failed"
    req = env.only_request(run.run_id, job="templated_export.approve_export")
    assert (req["status"], req["rule"]) == ("denied", "pii-export")
    action = req["action"]
    assert action["kind"] == "export"
    assert [(a["namespace"], a["name"]) for a in action["inputs"]] == [
        ("postgres://prod:5432", "crm.public.customers")
    ]
    assert [(a["namespace"], a["name"]) for a in action["outputs"]] == [
        ("s3://partner-share", "exports/2026-03-01/customers.csv")
    ]


def test_a_resumed_gate_does_not_ask_the_server_again(env: GateHarness) -> None:
    before = env.gates_opened("reattached")
    thread = env.reviewer([("alice", "approve", ""), ("bob", "approve", "")])
    run = _dag("pii_export").test()
    thread.join(5)
    assert states(run)["export"] == "success"
    # the resumed task rendered its templates again, but took the answer from the trigger
    assert env.gates_opened("reattached") == before
    audit = env.audit("pii_export.approve_export", run.run_id)
    assert audit.count("request.created") == 1 and audit.count("gate.released") == 1
    # what a second ask would have shown: the same key once more is counted as a reattach
    req = env.only_request(run.run_id, job="pii_export.approve_export", status="approved")
    r = httpx.post(
        f"{env.url}/api/v1/requests",
        json={"idempotency_key": req["idempotency_key"], "action": req["action"]},
        headers=env.auth("airflow-prod"),
    )
    assert r.status_code == 200 and r.json()["status"] == "approved", r.text
    assert env.gates_opened("reattached") == before + 1


def test_an_action_changed_after_rendering_is_the_one_asked_about(env: GateHarness) -> None:
    # Rendered as a routine read (which the policy allows), turned into a PII export by a
    # pre_execute: the gate asks in execute, so only the export is asked about, and it waits.
    thread = env.reviewer([("alice", "deny", "not what was rendered")])
    run = _dag("read_becomes_export").test()
    thread.join(5)
    assert states(run)["approve_export"] == "failed"
    assert not env.ran("read_becomes_export.export")
    audit = env.audit("read_becomes_export.approve_export", run.run_id)
    assert audit[0] == "request.created" and "policy.allowed" not in audit, audit
    req = env.only_request(run.run_id, job="read_becomes_export.approve_export", status="denied")
    assert req["action"]["kind"] == "export"


def test_a_context_changed_in_place_after_rendering_is_the_one_asked_about(
    env: GateHarness,
) -> None:
    from sluicegate.idempotency import action_digest

    run = _dag("read_context_changed").test()
    assert states(run)["export"] == "success"
    rows = env.audit_rows("read_context_changed.approve_export")
    (row,) = [row for row in rows if row["data"].get("run_id") == run.run_id]
    assert row["kind"] == "policy.allowed"
    # asked once, about the action as the pre_execute left it (999999 rows), not as rendered
    gate = _dag("read_context_changed").get_task("approve_export")
    gate.sluicegate_action |= {
        "summary": f"read sales.public.orders for the partner, run {run.run_id}",
        "context": {"rows": 999999, "dag": "read_context_changed"},
        "destination": "s3://partner-share/read_context_changed/",
    }
    assert row["data"]["idempotency_key"].endswith(f":{action_digest(gate.action())}")


def test_a_task_that_fails_before_execute_opens_no_request(env: GateHarness) -> None:
    # Its pre_execute raises: the gate never asked, so no request, no notification, no audit.
    run = _dag("pii_export_fails_before_execute").test()
    assert states(run)["approve_export"] == "failed"
    assert states(run)["export"] in ("upstream_failed", "None")
    assert not env.ran("pii_export_fails_before_execute.export")
    assert env.requests(job="pii_export_fails_before_execute.approve_export") == []
    assert env.audit("pii_export_fails_before_execute.approve_export", run.run_id) == []


def test_airflow_tasks_render_shows_the_action_and_opens_no_gate(env: GateHarness) -> None:
    # `airflow tasks render` renders a task's templates outside the task runner: the gate
    # must not ask the server from there.
    out = subprocess.run(
        [sys.executable, "-m", "airflow", "tasks", "render", "routine_read", "approve_export",
         "2026-03-01T00:00:00+00:00"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    assert "property: sluicegate_action" in out.stdout
    assert "s3://partner-share/routine_read/" in out.stdout  # the rendered destination
    rows = env.audit_rows("routine_read.approve_export")
    assert not [row for row in rows if "2026-03-01" in json.dumps(row)]


def test_the_server_restarting_while_the_task_waits_still_resumes(env: GateHarness) -> None:
    def restart(_request: object) -> None:
        env.server.stop()
        time.sleep(1.0)
        env.server.start()

    thread = env.reviewer([("alice", "approve", ""), ("bob", "approve", "")], before=restart)
    run = _dag("pii_export").test()
    thread.join(5)
    assert states(run)["export"] == "success"


class _TI:
    def __init__(self, run_id: str) -> None:
        self.dag_id, self.task_id, self.run_id = "pii_export", "approve_export", run_id
        self.map_index, self.try_number = -1, 1


def test_a_retry_of_the_same_task_instance_reattaches_to_its_request(env: GateHarness) -> None:
    from airflow.sdk.exceptions import TaskDeferred

    from sluicegate_airflow.operators import ApprovalGateOperator

    gate = ApprovalGateOperator(
        task_id="approve_export",
        kind="export",
        inputs=[{"namespace": "postgres://prod:5432", "name": "crm.public.customers"}],
        owner="carol",
    )
    ids = []
    for try_number in (1, 2):
        ti = _TI("manual__retry")
        ti.try_number = try_number
        with pytest.raises(TaskDeferred) as deferred:
            gate.execute({"ti": ti, "dag_run": None})  # type: ignore[arg-type]
        ids.append(deferred.value.trigger.request_id)
    assert ids[0] == ids[1]
    assert len(env.requests(job="pii_export.approve_export", status="pending")) == 1
    # Its defer timeout follows the rule's (24 h) plus a margin, never Airflow's default.
    assert deferred.value.timeout is not None
    assert 24 * 3600 < deferred.value.timeout.total_seconds() <= 24 * 3600 + 6 * 60


def test_the_example_dag_loads_as_documented() -> None:
    from airflow.dag_processing.dagbag import DagBag

    folder = Path(__file__).resolve().parents[3] / "examples" / "airflow"
    bag = DagBag(str(folder))
    assert not bag.import_errors, bag.import_errors
    dag = bag.get_dag("crm_export")
    assert dag is not None
    gate = dag.get_task("approve_export")
    assert type(gate).__name__ == "ApprovalGateOperator"
    assert gate.upstream_task_ids == {"extract"} and gate.downstream_task_ids == {"export"}


def test_the_readme_walkthrough_ends_in_an_approved_run(env: GateHarness, tmp_path: Path) -> None:
    # The README's steps, through the real CLIs: a fresh AIRFLOW_HOME with the example DAG,
    # `airflow db migrate`, `airflow dags test crm_export`, then two stewards approve with
    # `sluicegate requests approve`; the export runs and the run succeeds.
    home = tmp_path / "airflow"
    (home / "dags").mkdir(parents=True)
    example = Path(__file__).resolve().parents[3] / "examples" / "airflow" / "crm_export.py"
    (home / "dags" / "crm_export.py").write_text(example.read_text())
    conn = {
        "conn_type": "sluicegate",
        "host": env.url,
        "password": env.tokens["airflow-prod"],
    }
    shell = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "SLUICEGATE"))}
    shell |= {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW_CONN_SLUICEGATE_DEFAULT": json.dumps(conn),
    }
    airflow = [sys.executable, "-m", "airflow"]
    sluicegate = str(Path(sys.executable).with_name("sluicegate"))
    subprocess.run([*airflow, "db", "migrate"], env=shell, check=True, capture_output=True)
    dag_test = subprocess.Popen(
        [*airflow, "dags", "test", "crm_export"],
        env=shell, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:

        def requests_cli(*args: str, who: str) -> str:
            out = subprocess.run(
                [sluicegate, "requests", *args, "--server", env.url,
                 "--token", env.tokens[who]],
                env=shell, capture_output=True, text=True, timeout=60, check=False,
            )  # fmt: skip
            assert out.returncode == 0, out.stderr
            return out.stdout

        # Wait for the gate's request through the API (a CLI call per poll would start a
        # Python each time), then list it with the CLI once, as the README does.
        deadline = time.monotonic() + PATIENCE
        while time.monotonic() < deadline and dag_test.poll() is None:
            if env.requests(status="pending", job="crm_export.approve_export"):
                break
            time.sleep(0.2)
        listed = requests_cli(
            "list", "--status", "pending", "--job", "crm_export.approve_export",
            "--format", "json", who="alice",
        )  # fmt: skip
        pending = json.loads(listed)["items"]
        assert pending, "the gate opened no request"
        (req,) = pending
        requests_cli("approve", req["id"], "--comment", "contract checked", who="alice")
        assert "approved  rule pii-export  2 of 2" in requests_cli("approve", req["id"], who="bob")
        printed, _ = dag_test.communicate(timeout=PATIENCE)
    finally:
        if dag_test.poll() is None:
            dag_test.kill()
            dag_test.wait()
    assert dag_test.returncode == 0, printed[-3000:]
    assert "exporting customers to s3://partner-share/exports/customers.csv" in printed
    assert "DagRun Finished: dag_id=crm_export" in printed and "state=success" in printed
    assert req["requester"]["owner"] == "carol"


def test_default_args_reach_the_gate_arguments_of_both_forms() -> None:
    # Airflow fills operator arguments from default_args by their names in __init__: a DAG
    # that names its Sluicegate connection once gets it in every gate.
    from datetime import datetime

    from airflow.sdk import dag, task

    from sluicegate_airflow.operators import ApprovalGateOperator

    @dag(
        dag_id="default_args_gates",
        start_date=datetime(2026, 1, 1),
        schedule=None,
        default_args={"sluicegate_conn_id": "sluicegate_eu", "fail_on_deny": False},
    )
    def build() -> None:
        ApprovalGateOperator(task_id="gate", kind="export")

        @task.sluicegate(kind="export")  # type: ignore[attr-defined]
        def export() -> None:
            pass

        export()

    built = build()
    for task_id in ("gate", "export"):
        op = built.get_task(task_id)
        assert (op.sluicegate_conn_id, op.fail_on_deny) == ("sluicegate_eu", False), task_id


@pytest.mark.parametrize(
    "dag_args",
    [
        {},
        {"render_template_as_native_obj": True},
        {"jinja_environment_kwargs": {"variable_start_string": "[[", "variable_end_string": "]]"}},
        {"jinja_environment_kwargs": {"keep_trailing_newline": True}},
        {"jinja_environment_kwargs": {"newline_sequence": "\r\n"}},
        {"jinja_environment_kwargs": {"line_statement_prefix": "%", "line_comment_prefix": "##"}},
    ],
    ids=["default", "native", "delimiters", "trailing-newline", "crlf", "line-prefixes"],
)
def test_the_gate_renders_its_strings_exactly_as_airflow_does(dag_args: dict[str, Any]) -> None:
    # The gate leaves rendering to Airflow (no shortcut of its own), so its strings render as
    # any operator's do, whatever the DAG's Jinja settings.
    from datetime import datetime

    from airflow.sdk import DAG, BaseOperator

    from sluicegate_airflow.decorators.sluicegate import _SluicegateDecoratedOperator
    from sluicegate_airflow.operators import ApprovalGateOperator

    for gate_class in (ApprovalGateOperator, _SluicegateDecoratedOperator):
        for method in ("render_template", "render_template_fields"):
            assert getattr(gate_class, method) is getattr(BaseOperator, method), method

    dag = DAG("render_check", schedule=None, start_date=datetime(2026, 1, 1), **dag_args)
    gate = ApprovalGateOperator(task_id="gate", kind="export", dag=dag)
    env = dag.get_template_env()
    context = {"ds": "2026-03-01", "rows": 120000}
    texts = ["", "Export customers", "120000", "[1, 2]", "a\n", "a\n\n", "a\r\nb", "a\nb",
             "x\ry", "{{ ds }}", "[[ ds ]]", "{# note #}x", "% if true\nyes\n% endif", "a ## b",
             "  spaced\t", "query.sql"]  # fmt: skip
    for text in texts:
        ours = gate.render_template(text, context, env)  # type: ignore[arg-type]
        airflows = BaseOperator.render_template(gate, text, context, env)  # type: ignore[arg-type]
        assert (type(ours), ours) == (type(airflows), airflows), text
