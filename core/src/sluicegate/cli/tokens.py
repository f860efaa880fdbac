"""``sluicegate token``: create, list and revoke API tokens in the store."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import click

from sluicegate.cli._common import db_option, format_option, open_store, settings
from sluicegate.exceptions import ConfigError

__all__ = ["token"]

# The store's TOKEN_SCOPES, written out: importing the store here would load SQLAlchemy for
# every command (test_cli checks that they agree).
_TOKEN_SCOPES = ["request", "review", "audit"]


@click.group()
def token() -> None:
    """Create, list and revoke API tokens (stored hashed; a token is shown once)."""


@token.command("create")
@db_option
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
    with open_store(ctx, db_url) as store:
        click.echo(store.create_token(principal, scope, ttl=lifetime))


@token.command("list")
@db_option
@click.option("--principal", help="Only this principal's tokens.")
@format_option
@click.pass_context
def token_list(ctx: click.Context, db_url: str | None, principal: str | None, fmt: str) -> None:
    """Every token's id, principal, scope, creation, expiry and revocation (never the token)."""
    with open_store(ctx, db_url) as store:
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
@db_option
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
    with open_store(ctx, db_url) as store:
        revoked = store.revoke_tokens(token_id=token_id, principal=principal)
    if not revoked:
        what = f"token {token_id}" if token_id is not None else f"every token of {principal!r}"
        click.echo(f"{what}: already revoked")
    for t in revoked:
        click.echo(f"revoked token {t.id} ({t.scope}, {t.principal})")


def _lifetime(ttl: str | None) -> timedelta | None:
    from sluicegate.policy import parse_duration

    if ttl is None:
        return None
    try:
        return parse_duration(ttl)
    except ValueError as err:
        raise click.BadParameter(str(err), param_hint="--ttl") from err


def _must_be_reviewer(ctx: click.Context, principal: str, policy_file: str | None) -> None:
    """A review token speaks for a reviewer of the policy, never for anybody else."""
    from sluicegate.policy import load_policy

    path = settings(ctx, policy=policy_file).policy
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


def _at(moment: datetime | None, none: str) -> str:
    return none if moment is None else f"{moment:%Y-%m-%d %H:%M:%S}Z"
