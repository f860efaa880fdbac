"""What every command shares: the error boundary, settings, the store, the client, options.

The boundary (:func:`run`) is the CLI's error contract in one place: an error a user can cause
is one line on stderr and exit 2, :class:`Fail` carries its own message and code (a broken
audit chain exits 1), and an unexpected exception is one line and exit 3 (``SLUICEGATE_DEBUG=1``
shows its traceback instead).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, NoReturn

import click

from sluicegate.exceptions import ConfigError, SluicegateError

if TYPE_CHECKING:
    from sluicegate.client import SluicegateClient
    from sluicegate.settings import Settings
    from sluicegate.store import Store

__all__ = [
    "Fail",
    "SluicegateGroup",
    "db_option",
    "format_option",
    "make_client",
    "open_store",
    "run",
    "server_option",
    "settings",
    "token_option",
]

PROG_NAME = "sluicegate"


class Fail(Exception):
    """Exit with ``code`` after printing ``message`` as it is (raised inside commands)."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


def run(group: click.Group, args: Sequence[str] | None, **extra: Any) -> NoReturn:
    """Run ``group`` with ``args`` (default: ``sys.argv[1:]``); every failure is one line on
    stderr and an exit code, never a traceback."""
    try:
        group.main(
            args=list(args) if args is not None else None,
            prog_name=extra.pop("prog_name", None) or PROG_NAME,
            standalone_mode=False,
            **extra,
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
    except Fail as err:
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


class SluicegateGroup(click.Group):
    """The root group, which keeps the error contract however it is called: as the console
    script, with ``python -m sluicegate.cli``, or by click's ``CliRunner`` in tests."""

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        """Run the command; in standalone mode (click's default) through :func:`run`, else as
        click does, raising to the caller."""
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        run(self, args, prog_name=prog_name, complete_var=complete_var, **extra)


def settings(ctx: click.Context, **overrides: Any) -> Settings:
    """The settings: ``overrides`` (the command's options), then the root ``--config`` file,
    the environment and ``./sluicegate.yaml``."""
    # Imported here (pydantic-settings, yaml): "--help" and commands without settings skip it.
    from sluicegate.settings import load_settings

    config = ctx.find_root().params.get("config")
    return load_settings(config, **overrides)


def open_store(ctx: click.Context, db_url: str | None) -> Store:
    """The store at ``--db``, else the configured database (use it as a context manager)."""
    from sluicegate.store import Store

    return Store(settings(ctx, db_url=db_url).db_url)


def make_client(
    ctx: click.Context, server: str | None, token_value: str | None
) -> SluicegateClient:
    """A client of ``--server`` (else the configured one) with ``--token`` (else
    ``SLUICEGATE_TOKEN``); no token at all is a usage error."""
    from sluicegate.client import SluicegateClient

    config = settings(ctx, server_url=server)
    if token_value is None and config.token is not None:
        token_value = config.token.get_secret_value()
    if not token_value:
        raise click.UsageError("no token: pass --token or set SLUICEGATE_TOKEN")
    try:
        return SluicegateClient(config.server_url, token_value)
    except ValueError as err:  # a server URL the client cannot use: the user's to fix
        raise ConfigError(str(err)) from err


# Options several commands share: the same flag with the same help wherever it appears.
db_option = click.option(
    "--db", "db_url", help="Database URL (default: settings, sqlite:///./sluicegate.db)."
)
format_option = click.option(
    "--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True
)
server_option = click.option("--server", help="Server URL (default: SLUICEGATE_SERVER_URL).")
token_option = click.option(
    "--token", "token_value", help="Bearer token (default: SLUICEGATE_TOKEN)."
)
