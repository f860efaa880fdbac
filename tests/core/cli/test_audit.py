"""``sluicegate audit verify`` and ``audit export``, on a store with a known history.

In process, through click's ``CliRunner`` (the ``sluicegate`` fixture).
"""

from __future__ import annotations

import csv
import io
import json
import sqlite3
from pathlib import Path

import pytest

from sluicegate.exceptions import SluicegateError
from tests.core.support.cli import Sluicegate, one_line_error
from tests.core.support.paths import EXAMPLES


def fill_store(url: str) -> None:
    """A store with a realistic history: 11 audit rows (allowed, approved, denied, refused)."""
    from sluicegate.model import Action, Asset, Channel, Requester, Verdict
    from sluicegate.policy import load_policy
    from sluicegate.store import Store
    from sluicegate.workflow import Workflow

    prod = "postgres://prod:5432"
    who = Requester(
        orchestrator="airflow",
        job="export_customers.publish",
        owner="carol",
        triggered_by="dave",
        principal="airflow-prod",
    )
    with Store(url) as store:
        flow = Workflow(store, load_policy(EXAMPLES / "policy.yaml"))
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


def test_audit_verify_names_the_first_tampered_row(tmp_path: Path, sluicegate: Sluicegate) -> None:
    url = f"sqlite:///{tmp_path}/t.db"
    fill_store(url)
    with sqlite3.connect(tmp_path / "t.db") as conn:
        conn.execute("UPDATE audit_events SET actor = 'mallory' WHERE seq = 4")
    # Exit 1 and one line on stderr.
    proc = sluicegate("audit", "verify", "--db", url)
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
