"""``sluicegate demo``: the whole approval story on an embedded SQLite store.

It plays the part of a pipeline and of its reviewers against the real policy engine, store
and audit log (no server, no other service), and prints what each of them would see.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from importlib.resources import files
from pathlib import Path

from sluicegate import audit
from sluicegate.approvals import Approvals, GateAnswer
from sluicegate.exceptions import ForbiddenError, SluicegateError
from sluicegate.model import Action, Asset, Channel, Requester, Verdict
from sluicegate.policy import Policy, load_policy
from sluicegate.store import Store

__all__ = ["bundled_policy_path", "run_demo"]

PROD = "postgres://prod:5432"
_VERB = {Verdict.APPROVE: "approves", Verdict.DENY: "denies"}


def bundled_policy_path() -> Path:
    """The example policy shipped with the package (also examples/policy.yaml)."""
    return Path(str(files("sluicegate.demo").joinpath("policy.yaml")))


def run_demo(
    *,
    db_url: str | None = None,
    policy_file: str | None = None,
    echo: Callable[[str], None] = print,
) -> None:
    """Run the demo; ``db_url`` defaults to a new SQLite file in a temporary folder."""
    if db_url is None:
        folder = Path(tempfile.mkdtemp(prefix="sluicegate-demo-"))
        db_url = f"sqlite:///{folder / 'sluicegate.db'}"
    policy = load_policy(policy_file or bundled_policy_path())
    with Store(db_url) as store:
        _story(Approvals(store, policy), policy, echo)
        result = audit.verify(store.engine)
        echo("")
        echo(f"audit: {result}")
        echo("")
        echo("Look closer:")
        echo(f"  sluicegate audit verify --db {db_url}")
        echo(f"  sluicegate audit export --db {db_url} --format csv")
        echo(f"  sluicegate policy check {policy.source} --action examples/actions/pii-export.json")
        if not result.ok:
            raise SluicegateError("the audit log of the demo does not verify")


def _show(echo: Callable[[str], None], step: str, answer: GateAnswer) -> None:
    ev = answer.evaluation
    rule = ev.rule or "default"
    if answer.status == "allowed":
        echo(f"  -> allowed by rule {rule!r}: the step runs now, nobody is notified")
    elif answer.status == "denied" and answer.request is None:
        echo(f"  -> denied by rule {rule!r}: {ev.reason or 'the policy forbids it'}")
    else:
        req = answer.request
        assert req is not None
        again = "" if answer.created else " (a retry: reattached, nothing sent again)"
        echo(f"  -> {answer.status}{again}: request {req.id}")
        echo(
            f"     rule {rule!r} needs {req.required_approvals} approval(s) from "
            f"{', '.join(req.groups)}; eligible: {', '.join(r.id for r in ev.eligible) or '(none)'}"
        )
        for reviewer, why in ev.excluded:
            echo(f"     {reviewer.id} may not approve: {why}")
        if ev.notify:
            echo(f"     would notify {', '.join(ev.notify)}")


def _decide(
    echo: Callable[[str], None],
    approvals: Approvals,
    request_id: str,
    reviewer: str,
    verdict: Verdict,
    comment: str = "",
) -> None:
    try:
        outcome = approvals.decide(
            request_id, reviewer=reviewer, verdict=verdict, comment=comment, channel=Channel.CLI
        )
    except ForbiddenError as err:
        echo(f"  {reviewer} tries to {verdict.value}: refused ({err})")
        return
    req = outcome.request
    said = f" ({comment})" if comment else ""
    if outcome.ended is None:
        echo(
            f"  {reviewer} {_VERB[verdict]}{said}: "
            f"{req.approvals} of {req.required_approvals} approvals"
        )
    else:
        echo(f"  {reviewer} {_VERB[verdict]}{said}: request {outcome.ended.value}")


def _story(approvals: Approvals, policy: Policy, echo: Callable[[str], None]) -> None:
    echo(
        f"Policy {policy.source}: {len(policy.spec.rules)} rules, {len(policy.reviewers)} reviewers"
    )
    airflow = Requester(
        orchestrator="airflow",
        job="export_customers.publish",
        run_id="manual__2026-11-25",
        owner="carol",
        triggered_by="dave",
        principal="airflow-prod",
    )

    echo("\n1. A routine read of the orders table")
    answer = approvals.open(
        idempotency_key="airflow:revenue.load:scheduled__2026-11-25:read:0",
        action=Action(
            kind="read",
            summary="Read orders for the revenue report",
            inputs=(Asset(namespace=PROD, name="sales.public.orders"),),
        ),
        requester=airflow.model_copy(update={"job": "revenue.load"}),
    )
    _show(echo, "read", answer)

    echo("\n2. Export customers (PII) to a partner bucket")
    export = Action(
        kind="export",
        summary="Export customers to the partner bucket",
        inputs=(Asset(namespace=PROD, name="crm.public.customers"),),
        outputs=(Asset(namespace="s3://partner-share", name="exports/customers.csv"),),
        destination="s3://partner-share/exports/customers.csv",
        context={"rows": 120000, "query": "SELECT * FROM crm.public.customers"},
    )
    key = "airflow:export_customers:manual__2026-11-25:publish:0"
    answer = approvals.open(idempotency_key=key, action=export, requester=airflow)
    _show(echo, "export", answer)
    assert answer.request is not None
    request_id = str(answer.request.id)
    echo("   the task is retried while it waits:")
    _show(echo, "export", approvals.open(idempotency_key=key, action=export, requester=airflow))
    _decide(echo, approvals, request_id, "carol", Verdict.APPROVE)
    _decide(echo, approvals, request_id, "alice", Verdict.APPROVE)
    _decide(echo, approvals, request_id, "bob", Verdict.APPROVE)
    approvals.release(request_id, principal="airflow-prod")
    echo("  -> the export task resumes and runs; the release is audited")

    echo("\n3. Grant SELECT on the ledger to analytics")
    grant = Action(
        kind="grant",
        summary="Grant SELECT on finance.public.ledger to analytics",
        outputs=(Asset(namespace=PROD, name="finance.public.ledger"),),
        context={"statement": "GRANT SELECT ON finance.public.ledger TO analytics"},
    )
    answer = approvals.open(
        idempotency_key="airflow:grants.apply:manual__2026-11-25:grant:0",
        action=grant,
        requester=airflow.model_copy(update={"job": "grants.apply"}),
    )
    _show(echo, "grant", answer)
    assert answer.request is not None
    _decide(
        echo,
        approvals,
        str(answer.request.id),
        "erin",
        Verdict.DENY,
        "analytics reads the ledger through the reporting view",
    )
    echo("  -> the grant task fails without retrying; nothing was granted")

    echo("\n4. Export a table of secrets")
    answer = approvals.open(
        idempotency_key="airflow:vault.sync:manual__2026-11-25:export:0",
        action=Action(
            kind="export",
            summary="Copy API keys to a partner",
            inputs=(Asset(namespace=PROD, name="vault.api_keys", classifications=("secret",)),),
        ),
        requester=airflow.model_copy(update={"job": "vault.sync"}),
    )
    _show(echo, "secrets", answer)
