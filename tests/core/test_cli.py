"""The ``sluicegate`` command.

Most tests run it in process through its entry point, ``sluicegate.cli:main`` (what the
installed ``sluicegate`` script calls): the same parsing, the same one-line errors and the same
exit codes, without paying a Python start and every import for each call. The installed script
itself runs as a subprocess, the way a user runs it, where only a real process proves it:
``--help``, an exit 1, and the one-line errors of a database that is not there. The demo tests
run ``sluicegate demo`` as a subprocess too.
"""

from __future__ import annotations

import csv
import io
import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from sluicegate.cli import main
from sluicegate.exceptions import SluicegateError

ROOT = Path(__file__).parents[2]
EXAMPLES = ROOT / "examples"
SLUICEGATE = str(Path(sys.executable).with_name("sluicegate"))


def run(
    *args: str, cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("SLUICEGATE_")}
    return subprocess.run(
        [SLUICEGATE, *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
        env={**base, **(env or {})},
    )


#: ``sluicegate ARGS`` in process, answered like :func:`run`.
Sluicegate = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def sluicegate(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Sluicegate:
    """``sluicegate ARGS`` through ``sluicegate.cli:main`` in this process, with no
    SLUICEGATE_* variable but the ``env`` given, in the test's own folder: its exit code,
    stdout and stderr, as :func:`run` gives them."""
    for name in list(os.environ):
        if name.startswith("SLUICEGATE_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)

    def call(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        capsys.readouterr()  # only what this call prints
        with monkeypatch.context() as scoped:
            for name, value in (env or {}).items():
                scoped.setenv(name, value)
            with pytest.raises(SystemExit) as ended:  # main() always ends with sys.exit
                main(list(args))
        out, err = capsys.readouterr()
        code = ended.value.code
        returncode = code if isinstance(code, int) else 0 if code is None else 1
        return subprocess.CompletedProcess(["sluicegate", *args], returncode, out, err)

    return call


def one_line_error(proc: subprocess.CompletedProcess[str], fragment: str) -> None:
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith("sluicegate: error: "), proc.stderr
    assert proc.stderr.count("\n") == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert fragment in proc.stderr


def fill_store(url: str) -> None:
    """A store with a realistic history: 11 audit rows (allowed, approved, denied, refused)."""
    from sluicegate.approvals import Approvals
    from sluicegate.model import Action, Asset, Channel, Requester, Verdict
    from sluicegate.policy import load_policy
    from sluicegate.store import Store

    prod = "postgres://prod:5432"
    who = Requester(
        orchestrator="airflow",
        job="export_customers.publish",
        owner="carol",
        triggered_by="dave",
        principal="airflow-prod",
    )
    with Store(url) as store:
        flow = Approvals(store, load_policy(EXAMPLES / "policy.yaml"))
        flow.open(
            idempotency_key="read",
            requester=who.model_copy(update={"job": "revenue.load"}),
            action=Action(kind="read", inputs=(Asset(namespace=prod, name="sales.public.orders"),)),
        )
        export = flow.open(
            idempotency_key="export",
            requester=who,
            action=Action(
                kind="export",
                inputs=(Asset(namespace=prod, name="crm.public.customers"),),
                outputs=(Asset(namespace="s3://partner-share", name="exports/customers.csv"),),
            ),
        )
        assert export.request is not None
        with pytest.raises(SluicegateError):
            flow.decide(export.request.id, reviewer="carol", verdict=Verdict.APPROVE)
        for reviewer in ("alice", "bob"):
            flow.decide(
                export.request.id, reviewer=reviewer, verdict=Verdict.APPROVE, channel=Channel.CLI
            )
        flow.release(export.request.id, principal="airflow-prod")
        grant = flow.open(
            idempotency_key="grant",
            requester=who.model_copy(update={"job": "grants.apply"}),
            action=Action(
                kind="grant", outputs=(Asset(namespace=prod, name="finance.public.ledger"),)
            ),
        )
        assert grant.request is not None
        flow.decide(grant.request.id, reviewer="erin", verdict=Verdict.DENY, comment="use the view")
        flow.open(
            idempotency_key="vault",
            requester=who.model_copy(update={"job": "vault.sync"}),
            action=Action(
                kind="export",
                inputs=(Asset(namespace=prod, name="vault.api_keys", classifications=("secret",)),),
            ),
        )


@pytest.fixture(scope="module")
def demo_db(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A store with a known history."""
    url = f"sqlite:///{tmp_path_factory.mktemp('history')}/sluicegate.db"
    fill_store(url)
    return url


def test_help_lists_the_commands() -> None:
    proc = run("--help")
    assert proc.returncode == 0
    for command in ("audit", "demo", "policy", "requests", "serve", "token"):
        assert command in proc.stdout


def test_demo_halts_at_the_gate_and_resumes_when_approved(tmp_path: Path) -> None:
    proc = run("demo", "--approve-as", "alice,bob", "--wait", "60", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "allowed by rule 'routine-reads': the step ran at once" in out
    assert "the gate halts the step: pending, rule 'pii-export', 2 approvals needed" in out
    assert "/r/" in out and "?t=v1." in out  # signed review links
    assert "carol (the job owner) tries to approve: refused" in out and "job owner" in out
    assert "approved by alice, bob; the step resumed" in out
    assert "refused by policy, the step does not run" in out
    assert "chain intact" in out
    # Where the lineage went: a file of OpenLineage events, one run per gate.
    line = next(x for x in out.splitlines() if x.startswith("Lineage: "))
    assert "(START, COMPLETE, START, OTHER, OTHER, COMPLETE, START, FAIL)" in line, line
    path = Path(line.rsplit(" in ", 1)[1])
    events = [json.loads(x) for x in path.read_text().splitlines()]
    assert [e["eventType"] for e in events][-2:] == ["START", "FAIL"]
    assert events[5]["run"]["facets"]["sluicegate_approval"]["status"] == "released"


def test_demo_without_approvals_fails_closed(tmp_path: Path) -> None:
    proc = run("demo", "--wait", "2", cwd=tmp_path)
    assert "still pending" in proc.stdout
    assert "the step does not run" in proc.stdout
    assert proc.returncode == 1


# ----------------------------------------------------------------- policy check


def test_policy_check_prints_outcome_rule_why_and_reviewers(sluicegate: Sluicegate) -> None:
    proc = sluicegate(
        "policy",
        "check",
        str(EXAMPLES / "policy.yaml"),
        "--action",
        str(EXAMPLES / "actions" / "pii-export.json"),
        "--owner",
        "carol",
        "--triggered-by",
        "dave",
    )
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "outcome:   require" in out
    assert "rule:      rule 'pii-export'" in out
    assert (
        "dataset 'crm.public.customers' is classified 'pii' (classify[0] 'crm.public.customers*')"
        in out
    )
    assert "requires:  2 approval(s) from data-stewards; timeout 24h then deny" in out
    assert "eligible:  alice, bob" in out
    assert "excluded:  carol (is the job owner)" in out
    assert "no-secrets-leave: classifications ['pii', 'prod'] do not match ['secret']" in out


def test_policy_check_json_and_routine_read(sluicegate: Sluicegate) -> None:
    proc = sluicegate(
        "policy",
        "check",
        str(EXAMPLES / "policy.yaml"),
        "--action",
        str(EXAMPLES / "actions" / "routine-read.json"),
        "--format",
        "json",
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert (result["outcome"], result["rule"], result["eligible_reviewers"]) == (
        "allow",
        "routine-reads",
        [],
    )


def test_policy_check_accepts_a_gate_request_body(tmp_path: Path, sluicegate: Sluicegate) -> None:
    body = {
        "idempotency_key": "k",
        "action": json.loads((EXAMPLES / "actions" / "grant.json").read_text()),
        "requester": {"orchestrator": "airflow", "job": "grants.apply", "triggered_by": "erin"},
    }
    path = tmp_path / "body.json"
    path.write_text(json.dumps(body))
    proc = sluicegate("policy", "check", str(EXAMPLES / "policy.yaml"), "--action", str(path))
    assert proc.returncode == 0, proc.stderr
    assert "rule 'privilege-change'" in proc.stdout
    assert "excluded:  erin (is the user who triggered the run)" in proc.stdout
    assert "could never be approved" in proc.stdout


def test_policy_validate(sluicegate: Sluicegate) -> None:
    proc = sluicegate("policy", "validate", str(EXAMPLES / "policy.yaml"))
    assert proc.returncode == 0
    assert "valid: 5 rules, 4 reviewers" in proc.stdout


def test_bad_policy_is_one_line_exit_2(tmp_path: Path, sluicegate: Sluicegate) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\nrules:\n  - name: r\n    outcome: maybe\n")
    proc = sluicegate(
        "policy", "check", str(bad), "--action", str(EXAMPLES / "actions" / "grant.json")
    )
    one_line_error(proc, f"{bad}:4: rules[0].outcome: Input should be 'allow', 'deny' or 'require'")


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        ("{not json", "invalid JSON"),
        ('{"kind": "export", "inputs": [{"name": "t"}]}', "inputs.0.namespace: Field required"),
        ('["export"]', "Input should be a valid dictionary"),
    ],
)
def test_bad_action_file_is_one_line_exit_2(
    tmp_path: Path, content: str, fragment: str, sluicegate: Sluicegate
) -> None:
    action = tmp_path / "action.json"
    action.write_text(content)
    proc = sluicegate("policy", "check", str(EXAMPLES / "policy.yaml"), "--action", str(action))
    one_line_error(proc, fragment)
    assert str(action) in proc.stderr


def test_missing_files_and_options_are_one_line_exit_2(
    tmp_path: Path, sluicegate: Sluicegate
) -> None:
    one_line_error(
        sluicegate("policy", "check", str(tmp_path / "nope.yaml"), "--action", "x.json"),
        "no such file",
    )
    one_line_error(
        sluicegate("policy", "check", str(EXAMPLES / "policy.yaml")), "Missing option '--action'"
    )
    one_line_error(
        sluicegate("audit", "export", "--format", "xml"), "'xml' is not one of 'jsonl', 'csv'"
    )
    one_line_error(sluicegate("nonsense"), "No such command 'nonsense'")


# ----------------------------------------------------------------- audit


def test_audit_verify_intact(demo_db: str, sluicegate: Sluicegate) -> None:
    proc = sluicegate("audit", "verify", "--db", demo_db)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("audit log intact: 11 rows, head ")
    head = proc.stdout.split("--anchor ")[1].rstrip(")\n")
    assert sluicegate("audit", "verify", "--db", demo_db, "--anchor", head).returncode == 0
    one_line_error(
        sluicegate("audit", "verify", "--db", demo_db, "--anchor", "nonsense"), "expected SEQ:HASH"
    )


def test_audit_verify_reads_the_db_from_the_environment(
    demo_db: str, sluicegate: Sluicegate
) -> None:
    proc = sluicegate("audit", "verify", env={"SLUICEGATE_DB_URL": demo_db})
    assert proc.returncode == 0 and "11 rows" in proc.stdout


def test_audit_verify_names_the_first_tampered_row(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/t.db"
    fill_store(url)
    with sqlite3.connect(tmp_path / "t.db") as conn:
        conn.execute("UPDATE audit_events SET actor = 'mallory' WHERE seq = 4")
    # The installed script, as a user runs it: exit 1 and one line on stderr.
    proc = run("audit", "verify", "--db", url)
    assert proc.returncode == 1
    assert (
        proc.stderr.strip()
        == "audit log tampered: row 4: its content does not match its hash (altered)"
    )


def test_audit_export_jsonl_and_csv_with_filters(
    demo_db: str, tmp_path: Path, sluicegate: Sluicegate
) -> None:
    proc = sluicegate("audit", "export", "--db", demo_db)
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [r["seq"] for r in rows] == list(range(1, 12))
    assert {"request.created", "decision.rejected", "request.approved", "gate.released"} <= {
        r["kind"] for r in rows
    }

    proc = sluicegate("audit", "export", "--db", demo_db, "--format", "csv", "--reviewer", "bob")
    table = list(csv.DictReader(io.StringIO(proc.stdout)))
    assert {r["actor"] for r in table} == {"bob"}
    assert [r["kind"] for r in table] == ["decision.recorded", "request.approved"]

    out = tmp_path / "ledger.jsonl"
    proc = sluicegate(
        "audit", "export", "--db", demo_db, "--dataset", "finance.public.ledger", "-o", str(out)
    )
    assert proc.returncode == 0 and "wrote 3 rows" in proc.stderr
    kinds = [json.loads(line)["kind"] for line in out.read_text().splitlines()]
    assert kinds == ["request.created", "decision.recorded", "request.denied"]

    proc = sluicegate("audit", "export", "--db", demo_db, "--job", "vault.sync")
    assert [json.loads(line)["kind"] for line in proc.stdout.splitlines()] == ["policy.denied"]

    proc = sluicegate("audit", "export", "--db", demo_db, "--since", "2999-01-01")
    assert proc.returncode == 0 and proc.stdout == ""
    one_line_error(
        sluicegate("audit", "export", "--db", demo_db, "--since", "yesterday"), "not an ISO 8601"
    )


def test_unreachable_database_is_one_line_exit_2(tmp_path: Path) -> None:
    # As real processes: a driver's warning or a traceback on stderr would show here.
    one_line_error(
        run("audit", "verify", "--db", "postgresql://nobody@127.0.0.1:1/none"), "127.0.0.1"
    )
    one_line_error(
        run("audit", "verify", "--db", f"sqlite:///{tmp_path}/missing/dir/x.db"), "does not exist"
    )
    one_line_error(run("audit", "verify", "--db", "mysql://x/y"), "not supported")


# ----------------------------------------------------------------- tokens


def test_a_review_token_is_made_only_for_a_reviewer_of_the_policy(
    tmp_path: Path, sluicegate: Sluicegate
) -> None:
    db = f"sqlite:///{tmp_path}/sluicegate.db"
    policy = str(EXAMPLES / "policy.yaml")

    def create(principal: str, *extra: str, env: dict[str, str] | None = None) -> Any:
        return sluicegate(
            "token", "create", "--db", db, "--principal", principal, "--scope", "review", *extra,
            env=env,
        )  # fmt: skip

    one_line_error(
        create("mallory", "--policy", policy), f"'mallory' is not a reviewer in the policy {policy}"
    )
    # No policy given and none in the settings: refused, saying how to give one.
    one_line_error(create("alice"), "pass --policy FILE (or set SLUICEGATE_POLICY)")
    assert create("alice", "--policy", policy).stdout.startswith("sgrev_")
    assert create("bob", env={"SLUICEGATE_POLICY": policy}).returncode == 0
    # A request token names a pipeline, not a reviewer: no policy needed.
    made = sluicegate("token", "create", "--db", db, "--principal", "mallory", "--scope", "request")
    assert made.returncode == 0, made.stderr
    listed = json.loads(sluicegate("token", "list", "--db", db, "--format", "json").stdout)
    assert [(t["principal"], t["scope"]) for t in listed] == [
        ("alice", "review"),
        ("bob", "review"),
        ("mallory", "request"),
    ]


def test_token_list_and_revoke(tmp_path: Path, sluicegate: Sluicegate) -> None:
    from sluicegate.store.repository import hash_token

    db = f"sqlite:///{tmp_path}/sluicegate.db"
    policy = str(EXAMPLES / "policy.yaml")

    def create(principal: str, scope: str, *extra: str) -> str:
        made = sluicegate(
            "token", "create", "--db", db, "--principal", principal, "--scope", scope, *extra
        )
        assert made.returncode == 0, made.stderr
        return made.stdout.strip()

    made = [
        create("airflow-prod", "request"),
        create("alice", "review", "--policy", policy, "--ttl", "90d"),
        create("alice", "review", "--policy", policy),
        create("auditor", "audit", "--ttl", "12h"),
    ]
    assert made[3].startswith("sgaud_")
    text = sluicegate("token", "list", "--db", db)
    assert text.returncode == 0, text.stderr
    rows = text.stdout.splitlines()
    assert rows[0].split() == ["ID", "SCOPE", "CREATED", "EXPIRES", "REVOKED", "PRINCIPAL"]
    assert [r.split()[-1] for r in rows[1:]] == ["airflow-prod", "alice", "alice", "auditor"]
    for token in made:  # never the token, nor what would identify it in the database
        assert token not in text.stdout and hash_token(token) not in text.stdout
    listed = json.loads(sluicegate("token", "list", "--db", db, "--format", "json").stdout)
    assert [t["expires_at"] is not None for t in listed] == [False, True, False, True]
    assert all(t["revoked_at"] is None for t in listed)

    first = listed[1]["id"]
    proc = sluicegate("token", "revoke", first, "--db", db)
    assert proc.returncode == 0 and proc.stdout == f"revoked token {first} (review, alice)\n"
    again = sluicegate("token", "revoke", first, "--db", db)
    assert again.returncode == 0 and "already revoked" in again.stdout
    proc = sluicegate("token", "revoke", "--principal", "alice", "--db", db)
    assert proc.stdout == f"revoked token {listed[2]['id']} (review, alice)\n"
    after = json.loads(sluicegate("token", "list", "--db", db, "--format", "json").stdout)
    assert [t["revoked_at"] is not None for t in after] == [False, True, True, False]
    alice = sluicegate("token", "list", "--db", db, "--principal", "alice", "--format", "json")
    assert {t["principal"] for t in json.loads(alice.stdout)} == {"alice"}

    one_line_error(
        sluicegate("token", "revoke", "no-such-id", "--db", db), "no token with id no-such-id"
    )
    one_line_error(sluicegate("token", "revoke", "--db", db), "give a token ID or --principal NAME")
    one_line_error(
        sluicegate(
            "token", "create", "--db", db, "--principal", "x", "--scope", "request", "--ttl", "1y"
        ),
        "Invalid value for --ttl: duration '1y' is not like 30s",
    )
    # Each creation and each revocation is an audit row, naming the token by its id.
    exported = sluicegate("audit", "export", "--db", db)
    audit_rows = [json.loads(line) for line in exported.stdout.splitlines()]
    assert [r["kind"] for r in audit_rows] == ["token.created"] * 4 + ["token.revoked"] * 2
    assert [r["data"]["token_id"] for r in audit_rows[4:]] == [first, listed[2]["id"]]
    assert all(r["actor"] == "alice" for r in audit_rows[4:])


def test_the_cli_offers_the_scopes_the_store_accepts() -> None:
    from sluicegate.cli import _TOKEN_SCOPES
    from sluicegate.store.repository import TOKEN_SCOPES

    assert tuple(_TOKEN_SCOPES) == TOKEN_SCOPES
