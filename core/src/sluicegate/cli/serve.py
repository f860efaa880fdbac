"""``sluicegate serve``: run the approval server.

What a user can get wrong (no policy, a bad policy, a port in use) is said before the server's
own modules load: they take a second or two, and the user should not wait to hear it.
"""

from __future__ import annotations

import click

from sluicegate.cli._common import Fail, db_option, settings
from sluicegate.exceptions import ConfigError

__all__ = ["serve"]


@click.command()
@db_option
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

    config = settings(ctx, db_url=db_url, policy=policy_file, host=host, port=port, workers=workers)
    # What the user can get wrong is checked before the server's imports (a second or two).
    if config.policy is None:
        raise ConfigError("no policy file: pass --policy FILE or set SLUICEGATE_POLICY")
    policy = load_policy(config.policy)
    # Then the port: "serving on" is said only once the server can listen there.
    sockets = listen(config.host, config.port, config.workers)
    try:
        try:
            from sluicegate.server import create_app
            from sluicegate.server.run import run_server, run_workers
        except ImportError as err:
            raise Fail(
                "sluicegate: error: the server needs its extra: "
                f"pip install 'sluicegate[server]' ({err})",
                2,
            ) from err
        app = create_app(config, policy=policy)  # also the check that everything loads
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    _log_setup(log_level)
    click.echo(
        f"sluicegate: serving on http://{config.host}:{config.port} "
        f"(db {app.state.sluicegate.store.url}, policy {config.policy}"
        f"{f', {config.workers} workers' if config.workers > 1 else ''})",
        err=True,
    )
    if config.workers > 1:
        app.state.sluicegate.store.close()
        run_workers(config, log_level=log_level, sockets=sockets)
    else:
        run_server(app, host=config.host, port=config.port, log_level=log_level, sockets=sockets)


def _log_setup(level: str) -> None:
    import logging

    logging.basicConfig(
        level=level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
