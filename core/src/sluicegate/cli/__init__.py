"""The ``sluicegate`` command.

Every error a user can cause prints one line on stderr and exits 2 (``sluicegate: error:
...``); a broken audit chain exits 1. No traceback reaches the terminal: an unexpected
exception is reported as one line too, and ``SLUICEGATE_DEBUG=1`` shows the traceback.

One module per command group, each importing what it needs only when it runs (a command
should not pay for the server's or the store's imports it does not use): ``serve``,
``requests`` (list, show and decide on a server), ``token``, ``audit``, ``policy`` and
``demo``. What they share, the error boundary among it, is in ``_common``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NoReturn

import click

from sluicegate.cli import audit, demo, policy, requests, serve, tokens
from sluicegate.cli._common import SluicegateGroup, run

__all__ = ["cli", "main"]


@click.group(
    name="sluicegate",
    cls=SluicegateGroup,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.option(
    "--config",
    type=click.Path(dir_okay=False),
    default=None,
    help="Config file (YAML). Default: $SLUICEGATE_CONFIG, else ./sluicegate.yaml if present.",
)
@click.version_option(package_name="sluicegate", prog_name="sluicegate")
def cli(config: str | None) -> None:
    """Sluicegate: action-level approvals for data pipelines."""


cli.add_command(audit.audit)
cli.add_command(demo.demo)
cli.add_command(policy.policy)
cli.add_command(requests.requests)
cli.add_command(serve.serve)
cli.add_command(tokens.token)


def main(argv: Sequence[str] | None = None) -> NoReturn:
    """Run the CLI (the ``sluicegate`` console script); every failure is one line and an exit
    code."""
    run(cli, argv)
