"""The ``sluicegate`` command.

Every error a user can cause prints one line on stderr and exits 2 (``sluicegate: error:
...``); a broken audit chain exits 1. No traceback reaches the terminal: an unexpected
exception is reported as one line too, and ``SLUICEGATE_DEBUG=1`` shows the traceback.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, NoReturn

import click

from sluicegate.exceptions import ActionError, SluicegateError
from sluicegate.settings import Settings, load_settings

__all__ = ["cli", "main"]


class _Fail(Exception):
    """Exit with a code after printing a message (raised inside commands)."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


def _settings(ctx: click.Context, **overrides: Any) -> Settings:
    config = ctx.find_root().params.get("config")
    return load_settings(config, **overrides)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option(
    "--config",
    type=click.Path(dir_okay=False),
    default=None,
    help="Config file (YAML). Default: $SLUICEGATE_CONFIG, else ./sluicegate.yaml if present.",
)
@click.version_option(package_name="sluicegate", prog_name="sluicegate")
def cli(config: str | None) -> None:
    """Sluicegate: action-level approvals for data pipelines."""


# ---------------------------------------------------------------------------- policy


@cli.group()
def policy() -> None:
    """Validate a policy file and explain its decisions."""


def _read_json(path: str, what: str) -> Any:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError as err:
        raise ActionError(f"{what} file {path}: no such file") from err
    except (OSError, UnicodeDecodeError) as err:
        raise ActionError(f"{what} file {path}: cannot read: {err}") from err
    except json.JSONDecodeError as err:
        raise ActionError(f"{what} file {path}:{err.lineno}: invalid JSON: {err.msg}") from err


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
@click.option(
    "--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True
)
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
    from sluicegate.model import Requester, parse_action
    from sluicegate.policy import load_policy

    p = load_policy(policy_file)
    raw = _read_json(action_file, "action")
    # The opening-a-gate body ({"action": ..., "requester": ...}) is accepted as is too.
    if isinstance(raw, dict) and "action" in raw and "kind" not in raw:
        req_raw = raw.get("requester", {})
        raw = raw["action"]
    else:
        req_raw = {}
    action = parse_action(raw, source=f"action file {action_file}")
    if requester_file:
        req_raw = _read_json(requester_file, "requester")
    overrides = {"owner": owner, "triggered_by": triggered_by, "principal": principal, "job": job}
    req_raw = {**(req_raw or {}), **{k: v for k, v in overrides.items() if v is not None}}
    try:
        requester = Requester.model_validate(req_raw)
    except ValueError as err:
        raise ActionError(f"requester: {str(err).splitlines()[-1].strip()}") from err
    ev = p.evaluate(action, requester, explain=True)
    if fmt == "json":
        click.echo(json.dumps(ev.as_dict(), indent=2))
        return
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


# ---------------------------------------------------------------------------- audit


@cli.group()
def audit() -> None:
    """Verify and export the tamper-evident audit log."""


_db_option = click.option(
    "--db", "db_url", help="Database URL (default: settings, sqlite:///./sluicegate.db)."
)


def _store(ctx: click.Context, db_url: str | None) -> Any:
    from sluicegate.store import Store

    return Store(_settings(ctx, db_url=db_url).db_url)


@audit.command("verify")
@_db_option
@click.option(
    "--anchor", help="SEQ:HASH of a head printed earlier; the chain must still pass through it."
)
@click.pass_context
def audit_verify(ctx: click.Context, db_url: str | None, anchor: str | None) -> None:
    """Exit 0 and print the row count if the chain is intact; exit 1 naming the first bad row."""
    from sluicegate import audit as audit_log

    pinned: tuple[int, str] | None = None
    if anchor is not None:
        seq, sep, digest = anchor.partition(":")
        if not sep or not seq.isdigit() or len(digest) != 64:
            raise click.BadParameter(
                "expected SEQ:HASH (a row number and a 64-hex-digit hash)", param_hint="--anchor"
            )
        pinned = (int(seq), digest.lower())
    with _store(ctx, db_url) as store:
        result = audit_log.verify(store.engine, anchor=pinned)
    if not result.ok:
        raise _Fail(str(result), 1)
    click.echo(f"{result} (anchor: --anchor {result.rows}:{result.head})")


def _when(value: str | None, option: str) -> datetime | None:
    if value is None:
        return None
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as err:
        raise click.BadParameter(
            f"{value!r} is not an ISO 8601 date or time", param_hint=option
        ) from err
    return when if when.tzinfo else when.replace(tzinfo=timezone.utc)


@audit.command("export")
@_db_option
@click.option(
    "--format", "fmt", type=click.Choice(["jsonl", "csv"]), default="jsonl", show_default=True
)
@click.option("--since", help="Only rows at or after this time (ISO 8601, UTC if no offset).")
@click.option("--until", help="Only rows before this time.")
@click.option("--dataset", help="Only rows about this dataset (name, or namespace::name).")
@click.option("--job", help="Only rows about this job.")
@click.option("--reviewer", help="Only rows whose actor is this reviewer.")
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False, writable=True),
    help="Write here instead of stdout.",
)
@click.pass_context
def audit_export(
    ctx: click.Context,
    db_url: str | None,
    fmt: str,
    since: str | None,
    until: str | None,
    dataset: str | None,
    job: str | None,
    reviewer: str | None,
    output: str | None,
) -> None:
    """Stream audit rows as JSON Lines or CSV, with their hashes, for an auditor."""
    from sluicegate import audit as audit_log

    flt = audit_log.ExportFilter(
        since=_when(since, "--since"),
        until=_when(until, "--until"),
        dataset=dataset,
        job=job,
        reviewer=reviewer,
    )
    with _store(ctx, db_url) as store:
        if output is None:
            count = audit_log.export(store.engine, sys.stdout, fmt, flt)
        else:
            with open(output, "w", encoding="utf-8", newline="") as out:
                count = audit_log.export(store.engine, out, fmt, flt)
            click.echo(f"wrote {count} rows to {output}", err=True)


# ---------------------------------------------------------------------------- demo


@cli.command()
@_db_option
@click.option(
    "--policy",
    "policy_file",
    type=click.Path(dir_okay=False),
    help="Policy file (default: the bundled example policy).",
)
@click.pass_context
def demo(ctx: click.Context, db_url: str | None, policy_file: str | None) -> None:
    """Walk through gates, decisions and the audit log on an embedded SQLite store."""
    from sluicegate.demo import run_demo

    run_demo(db_url=db_url, policy_file=policy_file, echo=click.echo)


# ---------------------------------------------------------------------------- entry point


def main(argv: Sequence[str] | None = None) -> NoReturn:
    """Run the CLI; every failure is one line and an exit code."""
    try:
        cli.main(
            args=list(argv) if argv is not None else None,
            prog_name="sluicegate",
            standalone_mode=False,
        )
    except click.exceptions.Exit as err:
        sys.exit(err.exit_code)
    except click.exceptions.Abort:
        click.echo("sluicegate: aborted", err=True)
        sys.exit(130)
    except click.ClickException as err:
        ctx = getattr(err, "ctx", None)  # usage errors know their command; name its --help
        hint = f" (see '{ctx.command_path} --help')" if isinstance(ctx, click.Context) else ""
        click.echo(f"sluicegate: error: {err.format_message()}{hint}", err=True)
        sys.exit(2)
    except _Fail as err:
        click.echo(str(err), err=True)
        sys.exit(err.code)
    except SluicegateError as err:
        click.echo(f"sluicegate: error: {err}", err=True)
        sys.exit(2)
    except BrokenPipeError:
        # `sluicegate audit export | head`: the reader left; that is not an error.
        sys.stderr.close()
        sys.exit(0)
    except Exception as err:  # the boundary: one line, never a traceback (unless asked)
        if os.environ.get("SLUICEGATE_DEBUG"):
            raise
        click.echo(f"sluicegate: internal error: {type(err).__name__}: {err}", err=True)
        sys.exit(3)
    sys.exit(0)


if __name__ == "__main__":
    main()
