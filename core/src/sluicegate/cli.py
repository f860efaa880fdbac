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

from sluicegate.exceptions import ActionError, ConfigError, SluicegateError
from sluicegate.settings import Settings, load_settings

__all__ = ["cli", "main"]

# The store's TOKEN_SCOPES, written out: importing the store here would load SQLAlchemy for
# every command (test_cli checks that they agree).
_TOKEN_SCOPES = ["request", "review", "audit"]


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
    except RecursionError:
        raise ActionError(f"{what} file {path}: nested too deeply to read") from None


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


_format_option = click.option(
    "--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True
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


# ---------------------------------------------------------------------------- server


@cli.command()
@_db_option
@click.option(
    "--policy",
    "policy_file",
    type=click.Path(dir_okay=False),
    help="Policy file (or SLUICEGATE_POLICY).",
)
@click.option("--host", help="Interface to listen on (default 127.0.0.1).")
@click.option("--port", type=int, help="Port (default 8000).")
@click.option(
    "--workers",
    type=click.IntRange(1, 64),
    help="Server processes sharing the port (default 1; several share SQLite or PostgreSQL).",
)
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"]),
    default="info",
    show_default=True,
)
@click.pass_context
def serve(
    ctx: click.Context,
    db_url: str | None,
    policy_file: str | None,
    host: str | None,
    port: int | None,
    workers: int | None,
    log_level: str,
) -> None:
    """Run the approval server (HTTP API, review pages, metrics)."""
    from sluicegate._listen import listen
    from sluicegate.policy import load_policy

    settings = _settings(
        ctx, db_url=db_url, policy=policy_file, host=host, port=port, workers=workers
    )
    # What the user can get wrong is checked before the server's imports (a second or two).
    if settings.policy is None:
        raise ConfigError("no policy file: pass --policy FILE or set SLUICEGATE_POLICY")
    policy = load_policy(settings.policy)
    # Then the port: "serving on" is said only once the server can listen there.
    sockets = listen(settings.host, settings.port, settings.workers)
    try:
        try:
            from sluicegate.server import create_app
            from sluicegate.server.app import run_server, run_workers
        except ImportError as err:
            raise _Fail(
                "sluicegate: error: the server needs its extra: "
                f"pip install 'sluicegate[server]' ({err})",
                2,
            ) from err
        app = create_app(settings, policy=policy)  # also the check that everything loads
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    _log_setup(log_level)
    click.echo(
        f"sluicegate: serving on http://{settings.host}:{settings.port} "
        f"(db {app.state.sluicegate.store.url}, policy {settings.policy}"
        f"{f', {settings.workers} workers' if settings.workers > 1 else ''})",
        err=True,
    )
    if settings.workers > 1:
        app.state.sluicegate.store.close()
        run_workers(settings, log_level=log_level, sockets=sockets)
    else:
        run_server(
            app, host=settings.host, port=settings.port, log_level=log_level, sockets=sockets
        )


def _log_setup(level: str) -> None:
    import logging

    logging.basicConfig(
        level=level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )


@cli.group()
def token() -> None:
    """Create, list and revoke API tokens (stored hashed; a token is shown once)."""


def _lifetime(ttl: str | None) -> Any:
    from sluicegate.policy import parse_duration

    if ttl is None:
        return None
    try:
        return parse_duration(ttl)
    except ValueError as err:
        raise click.BadParameter(str(err), param_hint="--ttl") from err


def _must_be_reviewer(ctx: click.Context, principal: str, policy_file: str | None) -> None:
    """A review token speaks for a reviewer of the policy, never for anybody else."""
    from sluicegate.exceptions import ConfigError
    from sluicegate.policy import load_policy

    path = _settings(ctx, policy=policy_file).policy
    if path is None:
        raise ConfigError(
            f"a review token must be for a reviewer in the policy, and no policy is known to "
            f"check {principal!r}: pass --policy FILE (or set SLUICEGATE_POLICY)"
        )
    if load_policy(path).reviewer(principal) is None:
        raise ConfigError(
            f"{principal!r} is not a reviewer in the policy {path}: add them to its reviewers "
            "first, then make their token"
        )


@token.command("create")
@_db_option
@click.option(
    "--principal", required=True, help="Who the token speaks for (a reviewer id for review tokens)."
)
@click.option(
    "--scope",
    required=True,
    type=click.Choice(_TOKEN_SCOPES),
    help="request: open and cancel gates; review: decide; audit: read and verify the audit log.",
)
@click.option(
    "--ttl",
    metavar="DURATION",
    help="Expire after this long (30m, 12h, 90d, 1h30m; a year at most). Default: never.",
)
@click.option(
    "--policy",
    "policy_file",
    type=click.Path(dir_okay=False),
    help="Policy whose reviewers a review token's principal must be among "
    "(default: SLUICEGATE_POLICY).",
)
@click.pass_context
def token_create(
    ctx: click.Context,
    db_url: str | None,
    principal: str,
    scope: str,
    ttl: str | None,
    policy_file: str | None,
) -> None:
    """Print a new token, alone on its line."""
    lifetime = _lifetime(ttl)
    if scope == "review":
        _must_be_reviewer(ctx, principal, policy_file)
    with _store(ctx, db_url) as store:
        click.echo(store.create_token(principal, scope, ttl=lifetime))


def _at(moment: datetime | None, none: str) -> str:
    return none if moment is None else f"{moment:%Y-%m-%d %H:%M:%S}Z"


@token.command("list")
@_db_option
@click.option("--principal", help="Only this principal's tokens.")
@_format_option
@click.pass_context
def token_list(ctx: click.Context, db_url: str | None, principal: str | None, fmt: str) -> None:
    """Every token's id, principal, scope, creation, expiry and revocation (never the token)."""
    with _store(ctx, db_url) as store:
        found = store.list_tokens(principal)
    if fmt == "json":
        rows = [
            {
                "id": t.id,
                "principal": t.principal,
                "scope": t.scope,
                "created_at": _at(t.created_at, ""),
                "expires_at": _at(t.expires_at, "") or None,
                "revoked_at": _at(t.revoked_at, "") or None,
            }
            for t in found
        ]
        click.echo(json.dumps(rows, indent=2))
        return
    if not found:
        click.echo("no tokens")
        return
    click.echo(
        f"{'ID':<36}  {'SCOPE':<7}  {'CREATED':<20}  {'EXPIRES':<20}  {'REVOKED':<20}  PRINCIPAL"
    )
    for t in found:
        click.echo(
            f"{t.id:<36}  {t.scope:<7}  {_at(t.created_at, '-'):<20}  "
            f"{_at(t.expires_at, 'never'):<20}  {_at(t.revoked_at, '-'):<20}  {t.principal}"
        )


@token.command("revoke")
@click.argument("token_id", metavar="ID", required=False)
@_db_option
@click.option("--principal", help="Revoke every token of this principal instead.")
@click.pass_context
def token_revoke(
    ctx: click.Context, token_id: str | None, db_url: str | None, principal: str | None
) -> None:
    """Revoke token ID (see 'token list'), or all of one --principal's tokens.

    The review pages' sessions signed in with it end at once, on every replica; the API
    refuses it within 10 seconds (each server's token cache).
    """
    if (token_id is None) == (principal is None):
        raise click.UsageError("give a token ID or --principal NAME (one of them)")
    with _store(ctx, db_url) as store:
        revoked = store.revoke_tokens(token_id=token_id, principal=principal)
    if not revoked:
        what = f"token {token_id}" if token_id is not None else f"every token of {principal!r}"
        click.echo(f"{what}: already revoked")
    for t in revoked:
        click.echo(f"revoked token {t.id} ({t.scope}, {t.principal})")


# ---------------------------------------------------------------------------- requests


@cli.group()
def requests() -> None:
    """List, inspect and decide requests on a server (for reviewers)."""


def _client(ctx: click.Context, server: str | None, token_value: str | None) -> Any:
    from sluicegate.client import SluicegateClient

    settings = _settings(ctx, server_url=server)
    if token_value is None and settings.token is not None:
        token_value = settings.token.get_secret_value()
    if not token_value:
        raise click.UsageError("no token: pass --token or set SLUICEGATE_TOKEN")
    try:
        return SluicegateClient(settings.server_url, token_value)
    except ValueError as err:  # a server URL the client cannot use: the user's to fix
        raise ConfigError(str(err)) from err


_server_option = click.option("--server", help="Server URL (default: SLUICEGATE_SERVER_URL).")
_token_option = click.option(
    "--token", "token_value", help="Bearer token (default: SLUICEGATE_TOKEN)."
)


def _show_request(r: Any, fmt: str) -> None:
    if fmt == "json":
        click.echo(r.model_dump_json(indent=2))
        return
    action = r.action or {}
    click.echo(
        f"{r.id}  {r.status}  rule {r.rule or '-'}  "
        f"{r.approvals} of {r.required_approvals} approvals"
    )
    if action.get("summary"):
        click.echo(f"  {action['summary']}")
    for role in ("inputs", "outputs"):
        for a in action.get(role, []):
            effective = r.classifications.get(f"{a['namespace']}::{a['name']}")
            classes = ", ".join(effective or a.get("classifications") or []) or "unclassified"
            click.echo(f"  {role[:-1]}: {a['namespace']}::{a['name']}  [{classes}]")
    req = r.requester or {}
    if req:
        click.echo(
            f"  requested by {req.get('principal')} for {req.get('orchestrator')} "
            f"job {req.get('job') or '-'}"
            f" (owner {req.get('owner') or '-'}, triggered by {req.get('triggered_by') or '-'})"
        )
    for d in r.decisions:
        said = f": {d.comment}" if d.comment else ""
        click.echo(f"  {d.reviewer} {d.verdict.value}d via {d.channel.value}{said}")
    if r.expires_at and r.status == "pending":
        click.echo(f"  expires {r.expires_at:%Y-%m-%d %H:%M} UTC; review at {r.review_url}")


@requests.command("list")
@_server_option
@_token_option
@click.option(
    "--status", type=click.Choice(["pending", "approved", "denied", "expired", "cancelled"])
)
@click.option("--dataset", help="Dataset name, or namespace::name.")
@click.option("--job", help="Job name.")
@click.option("--limit", type=click.IntRange(1, 500), default=50, show_default=True)
@_format_option
@click.pass_context
def requests_list(
    ctx: click.Context,
    server: str | None,
    token_value: str | None,
    status: str | None,
    dataset: str | None,
    job: str | None,
    limit: int,
    fmt: str,
) -> None:
    """Requests, newest first."""
    with _client(ctx, server, token_value) as client:
        page = client.list(status=status, dataset=dataset, job=job, limit=limit)
    if fmt == "json":
        click.echo(page.model_dump_json(indent=2))
        return
    if not page.items:
        click.echo("no requests")
    for r in page.items:
        summary = (r.action or {}).get("summary", "")
        click.echo(
            f"{r.id}  {r.status:<9} {r.approvals}/{r.required_approvals}  "
            f"{r.rule or '-':<20} {summary}"
        )


@requests.command("show")
@click.argument("request_id")
@_server_option
@_token_option
@_format_option
@click.pass_context
def requests_show(
    ctx: click.Context, request_id: str, server: str | None, token_value: str | None, fmt: str
) -> None:
    """One request with its decisions."""
    with _client(ctx, server, token_value) as client:
        _show_request(client.get(request_id), fmt)


def _decide(
    ctx: click.Context,
    request_id: str,
    server: str | None,
    token_value: str | None,
    verdict: str,
    comment: str,
    fmt: str,
) -> None:
    with _client(ctx, server, token_value) as client:
        shown = client.get(request_id)  # decide on what we were shown: bind the fingerprint
        _show_request(
            client.decide(request_id, verdict, comment, fingerprint=shown.fingerprint), fmt
        )


@requests.command("approve")
@click.argument("request_id")
@_server_option
@_token_option
@click.option("--comment", default="", help="Why (optional).")
@_format_option
@click.pass_context
def requests_approve(
    ctx: click.Context,
    request_id: str,
    server: str | None,
    token_value: str | None,
    comment: str,
    fmt: str,
) -> None:
    """Approve a request (needs a review token)."""
    _decide(ctx, request_id, server, token_value, "approve", comment, fmt)


@requests.command("deny")
@click.argument("request_id")
@_server_option
@_token_option
@click.option("--comment", default="", help="Why (some rules require it).")
@_format_option
@click.pass_context
def requests_deny(
    ctx: click.Context,
    request_id: str,
    server: str | None,
    token_value: str | None,
    comment: str,
    fmt: str,
) -> None:
    """Deny a request (needs a review token)."""
    _decide(ctx, request_id, server, token_value, "deny", comment, fmt)


# ---------------------------------------------------------------------------- demo


@cli.command()
@_db_option
@click.option(
    "--policy",
    "policy_file",
    type=click.Path(dir_okay=False),
    help="Policy file (default: the bundled example policy).",
)
@click.option(
    "--approve-as",
    default="",
    metavar="IDS",
    help="Comma-separated reviewers who approve from a second process (unattended run).",
)
@click.option(
    "--port", type=click.IntRange(0, 65535), default=0, help="Server port (default: a free one)."
)
@click.option(
    "--wait",
    type=click.FloatRange(min=1),
    default=600,
    show_default=True,
    help="Seconds the gated step waits for a decision.",
)
@click.option(
    "--with",
    "orchestrator",
    type=click.Choice(["airflow", "dagster", "prefect"]),
    help="Run the example pipeline in this orchestrator, started as its users do "
    "(python3 dev.py demo --with NAME installs it).",
)
@click.option(
    "--examples",
    type=click.Path(file_okay=False),
    help="The checkout's examples/ folder, for --with (default: $SLUICEGATE_DEMO_EXAMPLES, "
    "else the checkout this package is installed from).",
)
def demo(
    db_url: str | None,
    policy_file: str | None,
    approve_as: str,
    port: int,
    wait: float,
    orchestrator: str | None,
    examples: str | None,
) -> None:
    """Start a server, run a pipeline that halts at a gate, resume it when approved."""
    reviewers = [r.strip() for r in approve_as.split(",") if r.strip()]
    if orchestrator is not None:
        _demo_with(orchestrator, db_url, policy_file, port, reviewers, wait, examples)
        return
    from sluicegate.demo import run_demo

    code = run_demo(
        db_url=db_url,
        policy_file=policy_file,
        approve_as=reviewers,
        port=port,
        wait=wait,
        echo=click.echo,
    )
    if code:
        raise _Fail("sluicegate: the demo did not end as the policy says", code)


def _demo_with(
    orchestrator: str,
    db_url: str | None,
    policy_file: str | None,
    port: int,
    reviewers: list[str],
    wait: float,
    examples: str | None,
) -> None:
    from sluicegate.demo.orchestrated import DemoFailed, run_with

    # The orchestrated demo makes its own server, database and port, with the example policy
    # the example pipelines are written for: an option it would ignore is refused instead.
    for given, option in ((db_url, "--db"), (policy_file, "--policy"), (port or None, "--port")):
        if given is not None:
            raise click.UsageError(f"{option} cannot be combined with --with")
    try:
        code = run_with(
            orchestrator, approve_as=reviewers, timeout=wait, echo=click.echo, examples=examples
        )
    except DemoFailed as err:
        raise _Fail(f"sluicegate: the demo failed: {err}", 1) from err
    if code == 130:  # interrupted: run_with said "stopped" already, nothing more to say
        raise SystemExit(130)
    if code:
        raise _Fail(f"sluicegate: the {orchestrator} pipeline did not finish", code)


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
