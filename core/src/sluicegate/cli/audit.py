"""``sluicegate audit``: verify the audit log's hash chain and export it for an auditor."""

from __future__ import annotations

import sys
from datetime import datetime, timezone

import click

from sluicegate.cli._common import Fail, db_option, open_store

__all__ = ["audit"]


@click.group()
def audit() -> None:
    """Verify and export the tamper-evident audit log."""


@audit.command("verify")
@db_option
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
    with open_store(ctx, db_url) as store:
        result = audit_log.verify(store.engine, anchor=pinned)
    if not result.ok:
        raise Fail(str(result), 1)
    click.echo(f"{result} (anchor: --anchor {result.rows}:{result.head})")


@audit.command("export")
@db_option
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
    with open_store(ctx, db_url) as store:
        if output is None:
            count = audit_log.export(store.engine, sys.stdout, fmt, flt)
        else:
            with open(output, "w", encoding="utf-8", newline="") as out:
                count = audit_log.export(store.engine, out, fmt, flt)
            click.echo(f"wrote {count} rows to {output}", err=True)


def _when(value: str | None, option: str) -> datetime | None:
    """``value`` of ``option`` as an aware time (UTC when it has no offset)."""
    if value is None:
        return None
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as err:
        raise click.BadParameter(
            f"{value!r} is not an ISO 8601 date or time", param_hint=option
        ) from err
    return when if when.tzinfo else when.replace(tzinfo=timezone.utc)
