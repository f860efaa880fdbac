"""``sluicegate demo``: the story end to end, alone or in an orchestrator (``--with``).

The work is in :mod:`sluicegate.demo`; this module turns its options and exit codes into the
CLI's.
"""

from __future__ import annotations

import click

from sluicegate.cli._common import Fail, db_option

__all__ = ["demo"]


@click.command()
@db_option
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
        raise Fail("sluicegate: the demo did not end as the policy says", code)


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
        raise Fail(f"sluicegate: the demo failed: {err}", 1) from err
    if code == 130:  # interrupted: run_with said "stopped" already, nothing more to say
        raise SystemExit(130)
    if code:
        raise Fail(f"sluicegate: the {orchestrator} pipeline did not finish", code)
