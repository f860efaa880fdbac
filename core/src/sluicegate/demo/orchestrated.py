"""``sluicegate demo --with airflow|dagster|prefect``: the example pipeline, run by a real
orchestrator, halts at its gate until reviewers approve.

:func:`run_with` starts the approval server (a ``sluicegate serve`` subprocess on a SQLite file
in a fresh work folder, with the bundled example policy), mints the tokens, and hands a
:class:`Stack` to the orchestrator's part of the demo, which starts the orchestrator as its
users do, runs the example pipeline to its gate and waits for it to resume. That part lives in
the orchestrator's adapter (the core never imports an orchestrator), offered through the entry
point group ``sluicegate.demos`` under the orchestrator's name (:func:`_runner`).
Every process started goes through :meth:`Stack.spawn`, so that all of them are stopped when
the demo ends, fails, or is interrupted (Ctrl-C exits 130).
"""

from __future__ import annotations

import contextlib
import os
import signal
import tempfile
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from types import FrameType
from typing import Any

from sluicegate.demo import (
    bundled_policy_path,
    free_port,
    print_audit_commands,
    sluicegate_argv,
)
from sluicegate.demo.stack import DemoFailed, Stack
from sluicegate.exceptions import ConfigError

__all__ = ["ORCHESTRATORS", "DemoFailed", "Stack", "find_examples", "run_with"]

ORCHESTRATORS = ("airflow", "dagster", "prefect")
#: The entry point group each adapter offers its orchestrator's part of the demo in, named
#: for the orchestrator: a module (or object) with ``run(stack, *, timeout) -> int`` and,
#: optionally, ``server_env(stack) -> dict`` and ``missing() -> str | None``.
DEMOS = "sluicegate.demos"
#: The distribution that offers each orchestrator's demo (what `dev.py demo --with` installs).
ADAPTERS = {
    "airflow": "airflow-provider-sluicegate",
    "dagster": "dagster-sluicegate",
    "prefect": "prefect-sluicegate",
}
#: Where dev.py says the checkout's examples are (``--examples`` says it too).
EXAMPLES_ENV = "SLUICEGATE_DEMO_EXAMPLES"
PIPELINE = "demo-pipeline"


def find_examples(given: str | Path | None) -> Path:
    """The checkout's examples/ folder: ``given``, else $SLUICEGATE_DEMO_EXAMPLES, else the
    checkout this package runs from (an editable install); else a one-line error."""
    candidates: list[Path] = []
    if given:
        candidates.append(Path(given))
    elif os.environ.get(EXAMPLES_ENV):
        candidates.append(Path(os.environ[EXAMPLES_ENV]))
    else:
        # core/src/sluicegate/demo/orchestrated.py -> the checkout's root is four levels up.
        candidates.append(Path(__file__).resolve().parents[4] / "examples")
    for path in candidates:
        if (path / "policy.yaml").is_file() and (path / "airflow").is_dir():
            return path.resolve()
    raise ConfigError(
        f"{candidates[0]} is not the examples/ folder of a Sluicegate checkout: the demo runs "
        "the checkout's example pipelines; pass --examples <checkout>/examples (or run "
        "python3 dev.py demo --with ... from the checkout)"
    )


def _runner(orchestrator: str) -> Any:
    """The orchestrator's part of the demo, from its adapter's ``sluicegate.demos`` entry
    point; a one-line ConfigError naming what to install when it is not there."""
    from importlib.metadata import entry_points

    if orchestrator not in ORCHESTRATORS:
        raise ConfigError(
            f"unknown orchestrator {orchestrator!r}: choose one of {', '.join(ORCHESTRATORS)}"
        )
    install = (
        f"{ADAPTERS[orchestrator]} is not installed here: "
        f"run python3 dev.py demo --with {orchestrator}"
    )
    found = entry_points(group=DEMOS, name=orchestrator)
    if not found:
        raise ConfigError(install)
    try:
        runner = next(iter(found)).load()
    except ImportError as err:  # the adapter is there, but not its orchestrator (or broken)
        raise ConfigError(f"{install} ({err})") from err
    why = runner.missing() if hasattr(runner, "missing") else None
    if why:
        raise ConfigError(why)
    return runner


@contextlib.contextmanager
def _sigterm_stops() -> Iterator[None]:
    """SIGTERM (a supervisor, `kill`) stops the demo as Ctrl-C does."""

    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, interrupt)
    # Python raises KeyboardInterrupt on Ctrl-C only if SIGINT was not ignored when it started,
    # and a parent may have ignored it for its children (pytest-xdist's workers, `cmd &` in a
    # script): the demo promises that Ctrl-C stops everything it started, so it says so itself.
    previous_int = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
        signal.signal(signal.SIGINT, previous_int)


def _mint(db_url: str, reviewers: Sequence[str]) -> tuple[str, dict[str, str], bytes]:
    """The pipeline's request token, a review token per reviewer, and the link signing key
    (made before the server starts: the store is the same one `sluicegate token create` uses)."""
    from sluicegate.server.keys import signing_keys
    from sluicegate.settings import load_settings
    from sluicegate.store import Store

    with Store(db_url) as store:
        request_token = store.create_token(PIPELINE, "request")
        tokens = {r: store.create_token(r, "review") for r in reviewers}
        key = signing_keys(load_settings(db_url=db_url), store.engine.url).current
    return request_token, tokens, key


def run_with(
    orchestrator: str,
    *,
    approve_as: Sequence[str] = (),
    timeout: float = 600.0,
    echo: Callable[[str], None] = print,
    examples: str | Path | None = None,
) -> int:
    """Run the demo with ``orchestrator``; the exit code (0: the pipeline resumed and finished;
    130: interrupted). :class:`DemoFailed` when it could not go on; every process it started
    is stopped in every case."""
    from sluicegate.policy import load_policy

    runner = _runner(orchestrator)
    folder = find_examples(examples)
    policy_path = bundled_policy_path()
    reviewers = list(load_policy(policy_path).reviewers)
    unknown = [r for r in approve_as if r not in reviewers]
    if unknown:
        raise ConfigError(f"--approve-as: {', '.join(unknown)} is not a reviewer in the policy")

    workdir = Path(tempfile.mkdtemp(prefix=f"sluicegate-demo-{orchestrator}-"))
    db_url = f"sqlite:///{workdir / 'sluicegate.db'}"
    request_token, tokens, key = _mint(db_url, reviewers)
    port = free_port()
    stack = Stack(
        server_url=f"http://127.0.0.1:{port}",
        request_token=request_token,
        review_tokens=tokens,
        db_url=db_url,
        policy_path=policy_path,
        workdir=workdir,
        examples=folder,
        echo=echo,
        approve_as=tuple(approve_as),
        link_key=key,
    )
    server_env = getattr(runner, "server_env", None)
    if server_env is not None:
        stack.server_env.update(server_env(stack))
    echo(f"Work folder (logs, state; kept after the demo): {workdir}")
    code = 1
    interrupted = False
    with _sigterm_stops():
        try:
            stack.spawn(
                "sluicegate-server",
                [
                    *sluicegate_argv(),
                    "serve",
                    "--db",
                    db_url,
                    "--policy",
                    str(policy_path),
                    "--port",
                    str(port),
                    "--log-level",
                    "warning",
                ],
                env={
                    "SLUICEGATE_SERVER_URL": stack.server_url,
                    "OPENLINEAGE_DISABLED": "true",
                    **stack.server_env,
                },
            )
            stack.wait_http(f"{stack.server_url}/healthz", timeout=60, what="sluicegate-server")
            echo(f"Sluicegate server on {stack.server_url} (policy {policy_path})")
            code = int(runner.run(stack, timeout=timeout))
        except KeyboardInterrupt:
            interrupted = True
            echo("stopping everything the demo started...")
        finally:
            stack.stop_all()
    if interrupted:
        echo("stopped")
        return 130
    print_audit_commands(echo, db_url=db_url, folder=workdir, policy=policy_path)
    return code
