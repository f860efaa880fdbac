"""``sluicegate policy``: validate a policy file and explain what it decides for an action."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from sluicegate.cli._common import format_option
from sluicegate.exceptions import ActionError

if TYPE_CHECKING:
    from sluicegate.policy import Evaluation

__all__ = ["policy"]


@click.group()
def policy() -> None:
    """Validate a policy file and explain its decisions."""


@policy.command("validate")
@click.argument("policy_file", metavar="POLICY", type=click.Path(dir_okay=False))
def policy_validate(policy_file: str) -> None:
    """Check POLICY and print a one-line summary."""
    from sluicegate.policy import load_policy

    p = load_policy(policy_file)
    spec = p.spec
    click.echo(
        f"{policy_file}: valid: {len(spec.rules)} rules, {len(spec.reviewers)} reviewers, "
        f"{len(spec.classify)} classify rules, default {spec.default}"
    )


@policy.command("check")
@click.argument("policy_file", metavar="POLICY", type=click.Path(dir_okay=False))
@click.option(
    "--action",
    "action_file",
    required=True,
    type=click.Path(dir_okay=False),
    help="JSON file with the action (kind, inputs, outputs, ...).",
)
@click.option(
    "--requester",
    "requester_file",
    type=click.Path(dir_okay=False),
    help="JSON file with the requester (orchestrator, job, owner, triggered_by, principal).",
)
@click.option("--owner", help="Job owner (overrides the requester file).")
@click.option("--triggered-by", help="User or agent that triggered the run.")
@click.option("--principal", help="API principal that would open the gate.")
@click.option("--job", help="Job name (dag_id.task_id, asset key, flow/task).")
@format_option
def policy_check(
    policy_file: str,
    action_file: str,
    requester_file: str | None,
    owner: str | None,
    triggered_by: str | None,
    principal: str | None,
    job: str | None,
    fmt: str,
) -> None:
    """Say what POLICY decides for an action, which rule decides it and why."""
    from sluicegate.model import parse_action, parse_requester
    from sluicegate.policy import load_policy

    p = load_policy(policy_file)
    raw = _read_json(action_file, "action")
    # The opening-a-gate body ({"action": ..., "requester": ...}) is accepted as is too.
    req_raw: Any = {}
    req_source = f"action file {action_file}: requester"
    if isinstance(raw, dict) and "action" in raw and "kind" not in raw:
        req_raw = raw.get("requester")
        raw = raw["action"]
    action = parse_action(raw, source=f"action file {action_file}")
    if requester_file:
        req_raw = _read_json(requester_file, "requester")
        req_source = f"requester file {requester_file}"
    overrides = {"owner": owner, "triggered_by": triggered_by, "principal": principal, "job": job}
    if req_raw is None:  # "requester": null, as good as none
        req_raw = {}
    if isinstance(req_raw, dict):
        req_raw = {**req_raw, **{k: v for k, v in overrides.items() if v is not None}}
    requester = parse_requester(req_raw, source=req_source)
    ev = p.evaluate(action, requester, explain=True)
    if fmt == "json":
        click.echo(json.dumps(ev.as_dict(), indent=2))
    else:
        _explain(ev)


def _read_json(path: str, what: str) -> Any:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError as err:
        raise ActionError(f"{what} file {path}: no such file") from err
    except (OSError, UnicodeDecodeError) as err:
        raise ActionError(f"{what} file {path}: cannot read: {err}") from err
    except json.JSONDecodeError as err:
        raise ActionError(f"{what} file {path}:{err.lineno}: invalid JSON: {err.msg}") from err
    except RecursionError:
        raise ActionError(f"{what} file {path}: nested too deeply to read") from None


def _explain(ev: Evaluation) -> None:
    """The evaluation in words: outcome, rule, why, what it requires and of whom."""
    rule = f"rule {ev.rule!r}" if ev.rule else "the default (no rule matched)"
    click.echo(f"outcome:   {ev.outcome}")
    click.echo(f"rule:      {rule}")
    click.echo("why:")
    for reason in ev.reasons:
        click.echo(f"  - {reason}")
    if ev.reason:
        click.echo(f"  note: {ev.reason}")
    if ev.requirement is not None:
        r = ev.requirement
        click.echo(
            f"requires:  {r.approvals} approval(s) from {', '.join(r.groups)}; "
            f"timeout {_duration(r.timeout.total_seconds())} then {r.on_timeout}"
            + ("; a comment is required to deny" if r.comment_on_deny else "")
        )
        names = ", ".join(rv.id for rv in ev.eligible) or "(none)"
        click.echo(f"eligible:  {names}")
        for rv, why in ev.excluded:
            click.echo(f"excluded:  {rv.id} ({why})")
        if not ev.satisfiable:
            click.echo(
                f"warning:   only {len(ev.eligible)} eligible reviewer(s) for a quorum of "
                f"{r.approvals}: this request could never be approved"
            )
    if ev.notify:
        click.echo(f"notify:    {', '.join(ev.notify)}")
    click.echo("datasets:")
    for name, classes in ev.classifications.items():
        click.echo(f"  - {name}  [{', '.join(classes) or 'unclassified'}]")
    if ev.trace:
        click.echo("earlier rules:")
        for line in ev.trace:
            click.echo(f"  - {line}")


def _duration(seconds: float) -> str:
    s = int(seconds)
    # Days only from two on: people write "24h", not "1d".
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if s >= size and s % size == 0 and (unit != "d" or s >= 2 * size):
            return f"{s // size}{unit}"
    return f"{s}s"
