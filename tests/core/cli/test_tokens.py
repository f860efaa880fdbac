"""``sluicegate token create``, ``list`` and ``revoke``: review tokens only for the policy's
reviewers, each change an audit row, and the scopes the store accepts.

In process, through click's ``CliRunner`` (the ``sluicegate`` fixture).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.core.support.cli import Sluicegate, one_line_error
from tests.core.support.paths import EXAMPLES

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
    from sluicegate.store import hash_token

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
    from sluicegate.cli.tokens import _TOKEN_SCOPES
    from sluicegate.store import TOKEN_SCOPES

    assert tuple(_TOKEN_SCOPES) == TOKEN_SCOPES
