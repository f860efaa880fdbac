"""``sluicegate requests``: list, show, approve and deny requests on a server (for reviewers).

These commands are clients of the server's HTTP API, never of the store: a reviewer's decision
goes through the same checks and the same audit as one made on the review pages.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from sluicegate.cli._common import format_option, make_client, server_option, token_option

if TYPE_CHECKING:
    from sluicegate.wire import RequestOut

__all__ = ["requests"]


@click.group()
def requests() -> None:
    """List, inspect and decide requests on a server (for reviewers)."""


@requests.command("list")
@server_option
@token_option
@click.option(
    "--status", type=click.Choice(["pending", "approved", "denied", "expired", "cancelled"])
)
@click.option("--dataset", help="Dataset name, or namespace::name.")
@click.option("--job", help="Job name.")
@click.option("--limit", type=click.IntRange(1, 500), default=50, show_default=True)
@click.option(
    "--before",
    metavar="REQUEST_ID",
    help="The page after this request: the id the previous page printed after 'next page:'.",
)
@format_option
@click.pass_context
def requests_list(
    ctx: click.Context,
    server: str | None,
    token_value: str | None,
    status: str | None,
    dataset: str | None,
    job: str | None,
    limit: int,
    before: str | None,
    fmt: str,
) -> None:
    """Requests, newest first, a page at a time (``--before`` for the next page)."""
    with make_client(ctx, server, token_value) as client:
        page = client.list(status=status, dataset=dataset, job=job, limit=limit, before=before)
    if fmt == "json":
        click.echo(page.model_dump_json(indent=2))
        return
    if not page.items:
        click.echo("no requests")
    for r in page.items:
        summary = r.action.summary if r.action is not None else ""
        click.echo(
            f"{r.id}  {r.status:<9} {r.approvals}/{r.required_approvals}  "
            f"{r.rule or '-':<20} {summary}"
        )
    if page.next:
        click.echo(f"next page: --before {page.next}")


@requests.command("show")
@click.argument("request_id")
@server_option
@token_option
@format_option
@click.pass_context
def requests_show(
    ctx: click.Context, request_id: str, server: str | None, token_value: str | None, fmt: str
) -> None:
    """One request with its decisions."""
    with make_client(ctx, server, token_value) as client:
        _show_request(client.get(request_id), fmt)


@requests.command("approve")
@click.argument("request_id")
@server_option
@token_option
@click.option("--comment", default="", help="Why (optional).")
@format_option
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
@server_option
@token_option
@click.option("--comment", default="", help="Why (some rules require it).")
@format_option
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


def _decide(
    ctx: click.Context,
    request_id: str,
    server: str | None,
    token_value: str | None,
    verdict: str,
    comment: str,
    fmt: str,
) -> None:
    with make_client(ctx, server, token_value) as client:
        shown = client.get(request_id)  # decide on what we were shown: bind the fingerprint
        _show_request(
            client.decide(request_id, verdict, comment, fingerprint=shown.fingerprint), fmt
        )


def _show_request(r: RequestOut, fmt: str) -> None:
    """One request: its status, action, datasets, requester and decisions."""
    if fmt == "json":
        click.echo(r.model_dump_json(indent=2))
        return
    click.echo(
        f"{r.id}  {r.status}  rule {r.rule or '-'}  "
        f"{r.approvals} of {r.required_approvals} approvals"
    )
    if r.action is not None:
        if r.action.summary:
            click.echo(f"  {r.action.summary}")
        for role, assets in (("input", r.action.inputs), ("output", r.action.outputs)):
            for a in assets:
                effective = r.classifications.get(f"{a.namespace}::{a.name}")
                classes = ", ".join(effective or a.classifications) or "unclassified"
                click.echo(f"  {role}: {a.namespace}::{a.name}  [{classes}]")
    req = r.requester
    if req is not None:
        click.echo(
            f"  requested by {req.principal} for {req.orchestrator} job {req.job or '-'}"
            f" (owner {req.owner or '-'}, triggered by {req.triggered_by or '-'})"
        )
    for d in r.decisions:
        said = f": {d.comment}" if d.comment else ""
        click.echo(f"  {d.reviewer} {d.verdict.value}d via {d.channel.value}{said}")
    if r.expires_at and r.status == "pending":
        click.echo(f"  expires {r.expires_at:%Y-%m-%d %H:%M} UTC; review at {r.review_url}")
