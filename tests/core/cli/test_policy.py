"""``sluicegate policy check`` and ``policy validate``: what the policy decides about an
action, said as a reviewer reads it (or as JSON), and a bad policy or action file in one line.

In process, through click's ``CliRunner`` (the ``sluicegate`` fixture).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.core.support.cli import Sluicegate, one_line_error
from tests.core.support.paths import EXAMPLES

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
