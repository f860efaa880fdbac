"""``sluicegate demo --with prefect``: the example flow, served, against a Prefect server.

As a Prefect user runs it: ``prefect server start`` (PREFECT_HOME in the demo's work folder),
the flow served by ``python examples/prefect/crm_export.py`` (``flow.serve()``), and a run of
its deployment created through Prefect's API (what ``prefect deployment run`` does). The gate
pauses the flow run; once the stewards approve, the Sluicegate server resumes it through
Prefect's API (it was started knowing that API's URL: :func:`server_env`), and the paused
flow run goes on in its process at once.

Found by the core's demo (``sluicegate.demo.orchestrated``) through this distribution's
``sluicegate.demos`` entry point ``prefect``: the core never imports Prefect.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from prefect.client.orchestration import SyncPrefectClient
from prefect.exceptions import ObjectNotFound

from sluicegate.demo.stack import DemoFailed, Stack

__all__ = ["run", "server_env"]

DEPLOYMENT = "crm-export/crm-export"  # flow name / the name crm_export.py serves it under
#: The setting that tells the Sluicegate server where Prefect's API is.
API_URL_SETTING = "SLUICEGATE_PREFECT__API_URL"
#: Seconds Prefect's server may take to start (its first start migrates a SQLite database;
#: 40 s on a busy 2-core machine) and the served flow to register its deployment.
START_TIMEOUT = 240.0
#: Seconds from the run's creation to the gate's request, and from the approval to the end.
RUN_TIMEOUT = 180.0
#: How often the served flow asks for runs to start (Prefect's default is 10 s, most of what
#: a demo would wait for between creating the run and the gate).
RUNNER_POLL_SECONDS = "2"


def server_env(stack: Stack) -> dict[str, str]:
    """The Sluicegate server's environment for this demo, asked before the server starts: the
    API URL of the Prefect server :func:`run` starts, so that the server resumes paused flow
    runs the moment their requests are decided."""
    return {API_URL_SETTING: f"http://127.0.0.1:{stack.free_port()}/api"}


def run(stack: Stack, *, timeout: float) -> int:
    """Start Prefect's server, serve the example flow, run its deployment to the gate, review
    it, and wait until Prefect says the flow run Completed; 0 when it did (or a reviewer
    denied and the run failed at the gate)."""
    api_url = stack.server_env[API_URL_SETTING]
    ui = api_url.removesuffix("/api")
    port = ui.rsplit(":", 1)[1]
    home = stack.workdir / "prefect-home"
    home.mkdir()
    env = {"PREFECT_HOME": str(home), "PREFECT_API_URL": api_url}
    stack.spawn(
        "prefect-server",
        # A throwaway server: nothing in it is worth Prefect's usage statistics.
        [*_prefect(), "server", "start", "--host", "127.0.0.1", "--port", port, "--analytics-off"],
        env=env,
        cwd=stack.workdir,
    )
    stack.echo(f"starting Prefect: prefect server start (PREFECT_HOME {home})")
    started = time.monotonic()
    stack.wait_http(f"{api_url}/health", timeout=START_TIMEOUT, what="prefect-server")
    stack.echo(f"Prefect UI: {ui}  (up in {time.monotonic() - started:.0f} s)")

    flow_file = stack.examples / "prefect" / "crm_export.py"
    served = stack.spawn(
        "prefect-flow",
        [sys.executable, str(flow_file)],
        env={
            **env,
            "SLUICEGATE_SERVER_URL": stack.server_url,
            "SLUICEGATE_TOKEN": stack.request_token,
            "PREFECT_RUNNER_POLL_FREQUENCY": RUNNER_POLL_SECONDS,
        },
        cwd=stack.workdir,
    )
    stack.echo(f"serving the flow: python {flow_file}")
    with SyncPrefectClient(api_url) as prefect:
        deployment = _deployment(stack, prefect, served, deadline=time.monotonic() + START_TIMEOUT)
        flow_run = prefect.create_flow_run_from_deployment(deployment.id)
        page = f"{ui}/runs/flow-run/{flow_run.id}"
        stack.echo(f"created flow run {flow_run.name} of {DEPLOYMENT}: {page}")

        request = stack.wait_for_request(timeout=RUN_TIMEOUT)
        _paused(prefect, flow_run.id, deadline=time.monotonic() + RUN_TIMEOUT)
        stack.echo(
            f"Prefect: flow run {flow_run.name} is Paused at the gate; the Sluicegate server "
            "resumes it through Prefect's API once the stewards decide"
        )
        stack.review(request)
        decided = stack.wait_decided(str(request["id"]), timeout=timeout)
        since = time.monotonic()
        final = _finished(prefect, flow_run.id, deadline=since + RUN_TIMEOUT)
    stack.echo(
        f"request {decided}; Prefect: flow run {flow_run.name} {final} "
        f"{time.monotonic() - since:.1f} s after the decision"
    )
    stack.echo(f"  {page}")
    if decided == "approved" and final != "Completed":
        raise DemoFailed(f"the approved flow run ended {final} (log: {stack.workdir})")
    if decided != "approved" and final == "Completed":
        raise DemoFailed(f"the flow run went on although its request is {decided}")
    return 0


def _prefect() -> list[str]:
    """The `prefect` command of this environment (its bin/ need not be on PATH)."""
    script = Path(sys.executable).parent / "prefect"
    return [str(script)] if script.is_file() else [sys.executable, "-m", "prefect"]


def _deployment(
    stack: Stack, prefect: Any, served: subprocess.Popen[bytes], *, deadline: float
) -> Any:
    """The served flow's deployment, once the flow's process has registered it."""
    while True:
        try:
            return prefect.read_deployment_by_name(DEPLOYMENT)
        except ObjectNotFound:
            pass
        log = stack.workdir / "prefect-flow.log"
        if served.poll() is not None:
            for line in stack.log_tail("prefect-flow"):
                stack.echo(f"  | {line}")
            raise DemoFailed(f"the served flow exited (code {served.returncode}); log: {log}")
        if time.monotonic() > deadline:
            raise DemoFailed(f"the served flow registered no deployment {DEPLOYMENT} (log: {log})")
        time.sleep(0.5)


def _state(prefect: Any, flow_run_id: Any) -> str:
    run = prefect.read_flow_run(flow_run_id)
    return str(run.state.name) if run.state is not None else "without a state"


def _paused(prefect: Any, flow_run_id: Any, *, deadline: float) -> None:
    """Until Prefect shows the flow run Paused (the gate pauses it right after opening)."""
    while True:
        run = prefect.read_flow_run(flow_run_id)
        if run.state is not None and run.state.is_paused():
            return
        if (run.state is not None and run.state.is_final()) or time.monotonic() > deadline:
            raise DemoFailed(
                f"the flow run is {_state(prefect, flow_run_id)}, not paused at the gate"
            )
        time.sleep(0.2)


def _finished(prefect: Any, flow_run_id: Any, *, deadline: float) -> str:
    """The state name a flow run ends in (Completed, Failed, Crashed, Cancelled), per Prefect."""
    while True:
        run = prefect.read_flow_run(flow_run_id)
        if run.state is not None and run.state.is_final():
            return str(run.state.name)
        if time.monotonic() > deadline:
            raise DemoFailed(f"the flow run is still {_state(prefect, flow_run_id)}")
        time.sleep(0.3)
