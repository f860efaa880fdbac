"""``sluicegate demo --with dagster``: the example Dagster definitions under ``dagster dev``.

The core's demo finds this module through the entry point ``dagster`` of the group
``sluicegate.demos`` (this distribution's pyproject.toml), and hands it the approval server it
started (:class:`~sluicegate.demo.stack.Stack`): the core never imports Dagster.

It starts Dagster as its users do, ``dagster dev -f examples/dagster/definitions.py`` (the
webserver, its GraphQL API and the daemon) with DAGSTER_HOME in the demo's work folder, and
launches ``nightly_partner_export`` through the webserver's GraphQL API, so that the run shows
in the UI like any other.

Which of the example's two gates, and why: Dagster has no pause, so a gate either holds its
step while it long-polls (``customers_export``, ``wait="step"``: a run worker and a step
process wait) or ends the run at the gate (``nightly_partner_export``, ``wait="sensor"``).
The demo shows the second, because it is what Dagster users need for approvals that take
hours: the run ends at once, nothing waits, and once the stewards approve, the
``partner_export_approvals`` sensor (in the daemon ``dagster dev`` runs) launches the export
by itself. It costs a demo the sensor's interval (10 s) plus a run's start.
"""

from __future__ import annotations

import importlib.util
import sys
import time
from pathlib import Path
from typing import Any

from dagster_sluicegate.gate import REQUEST_ID_TAG
from sluicegate.demo.stack import DemoFailed, Stack

__all__ = ["missing", "run"]

ASSET = "nightly_partner_export"
SENSOR = "partner_export_approvals"
#: Dagster's implicit job that holds every asset of a code location.
ASSET_JOB = "__ASSET_JOB"
#: Seconds Dagster may take to start and load the example's code location (cold imports of
#: dagster in four processes on a busy 2-core machine took 60 s).
START_TIMEOUT = 240.0
#: Seconds from the launch to the gate's request, and from the approval to the sensor's run.
RUN_TIMEOUT = 180.0

FINISHED = {"SUCCESS", "FAILURE", "CANCELED"}

_LOCATIONS = """
query {
  workspaceOrError {
    __typename
    ... on Workspace {
      locationEntries {
        name
        loadStatus
        locationOrLoadError { __typename ... on PythonError { message } }
      }
    }
    ... on PythonError { message }
  }
}
"""

_RUNS_TAGGED = """
query ($filter: RunsFilter) {
  runsOrError(filter: $filter) {
    __typename
    ... on Runs { results { runId status } }
    ... on PythonError { message }
  }
}
"""

_LAST_MATERIALIZATION = """
query ($key: AssetKeyInput!) {
  assetOrError(assetKey: $key) {
    __typename
    ... on Asset { assetMaterializations(limit: 1) { runId } }
  }
}
"""


def missing() -> str | None:
    """None when Dagster, its webserver and the integration are installed here, else how to
    get them."""
    for name in ("dagster", "dagster_webserver", "dagster_graphql", "dagster_sluicegate"):
        if importlib.util.find_spec(name) is None:
            return f"{name} is not installed here: run python3 dev.py demo --with dagster"
    return None


def run(stack: Stack, *, timeout: float) -> int:
    """Start ``dagster dev``, run the gated export to its gate, review it, and wait for the
    sensor's run to materialize it (read from Dagster's GraphQL API); 0 when it did."""
    # Imported here: only the demo needs it (missing() said it is installed).
    from dagster_graphql import (  # type: ignore[import-not-found, unused-ignore]
        DagsterGraphQLClient,
        DagsterGraphQLClientError,
    )

    definitions = stack.examples / "dagster" / "definitions.py"
    port = stack.free_port()
    ui = f"http://127.0.0.1:{port}"
    home = stack.workdir / "dagster-home"
    home.mkdir()
    # A throwaway instance: nothing in it is worth Dagster's usage statistics.
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    stack.spawn(
        "dagster",
        [*_dagster(), "dev", "-f", str(definitions), "-h", "127.0.0.1", "-p", str(port)],
        env={
            "DAGSTER_HOME": str(home),
            "SLUICEGATE_SERVER_URL": stack.server_url,
            "SLUICEGATE_TOKEN": stack.request_token,
            # Dagster's code servers listen on sockets in the temp folder: keep them in the
            # work folder, which outlives a killed process group.
            "TMPDIR": str(stack.workdir),
        },
        cwd=stack.workdir,
    )
    stack.echo(f"starting Dagster: dagster dev -f {definitions} (DAGSTER_HOME {home})")
    started = time.monotonic()
    stack.wait_http(f"{ui}/server_info", timeout=START_TIMEOUT, what="dagster")
    graphql = _GraphQL(stack, f"{ui}/graphql")
    graphql.wait_loaded(deadline=started + START_TIMEOUT)
    stack.echo(f"Dagster UI: {ui}  (up in {time.monotonic() - started:.0f} s)")

    client = DagsterGraphQLClient("127.0.0.1", port_number=port, timeout=60)
    try:
        first = client.submit_job_execution(ASSET_JOB, asset_selection=[ASSET])
    except DagsterGraphQLClientError as err:
        raise DemoFailed(f"Dagster refused to launch {ASSET}: {err}") from err
    stack.echo(f"launched {ASSET}: {ui}/runs/{first}")

    request = stack.wait_for_request(timeout=RUN_TIMEOUT)
    stack.review(request)
    status = _wait_run(client, first, deadline=time.monotonic() + RUN_TIMEOUT)
    if status != "SUCCESS":
        raise DemoFailed(f"Dagster run {first} ended {status} at the gate ({ui}/runs/{first})")
    stack.echo(
        f"Dagster: run {first} {status}, ended at the gate ({ASSET} not materialized): "
        f"nothing waits while the stewards decide; the sensor {SENSOR} launches the export "
        "once they approve"
    )
    decided = stack.wait_decided(str(request["id"]), timeout=timeout)
    if decided != "approved":
        stack.echo(f"request {decided}: the sensor launches nothing, the export never ran")
        return 0
    since = time.monotonic()
    second = graphql.run_tagged(REQUEST_ID_TAG, str(request["id"]), deadline=since + RUN_TIMEOUT)
    stack.echo(f"approved; the sensor launched the export: {ui}/runs/{second}")
    status = _wait_run(client, second, deadline=since + RUN_TIMEOUT)
    if status != "SUCCESS":
        raise DemoFailed(f"Dagster run {second} ended {status} ({ui}/runs/{second})")
    if graphql.last_materialization(ASSET) != second:
        raise DemoFailed(f"Dagster shows no materialization of {ASSET} by run {second}")
    stack.echo(
        f"Dagster: run {second} {status}, {ASSET} materialized "
        f"{time.monotonic() - since:.0f} s after the approval"
    )
    stack.echo(f"  {ui}/runs/{second}")
    return 0


def _dagster() -> list[str]:
    """The `dagster` command of this environment (its bin/ need not be on PATH)."""
    script = Path(sys.executable).parent / "dagster"
    return [str(script)] if script.is_file() else [sys.executable, "-m", "dagster"]


def _wait_run(client: Any, run_id: str, *, deadline: float) -> str:
    """The status a run ends with, read from Dagster's API."""
    while True:
        status = str(client.get_run_status(run_id).value)
        if status in FINISHED:
            return status
        if time.monotonic() > deadline:
            raise DemoFailed(f"Dagster run {run_id} is still {status}")
        time.sleep(0.5)


class _GraphQL:
    """The few queries of the webserver's GraphQL API that its Python client lacks."""

    def __init__(self, stack: Stack, url: str) -> None:
        self.stack = stack
        self.url = url

    def query(self, text: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        import httpx

        try:
            response = httpx.post(
                self.url, json={"query": text, "variables": variables or {}}, timeout=30
            )
            body = response.json()
        except (httpx.HTTPError, ValueError) as err:
            raise DemoFailed(f"Dagster's GraphQL API at {self.url}: {err}") from err
        if body.get("errors") or not isinstance(body.get("data"), dict):
            raise DemoFailed(f"Dagster's GraphQL API answered {str(body)[:300]}")
        data: dict[str, Any] = body["data"]
        return data

    def wait_loaded(self, *, deadline: float) -> None:
        """Until the example's code location is loaded (a load error fails at once)."""
        while True:
            answer = self.query(_LOCATIONS)["workspaceOrError"]
            entries = answer.get("locationEntries") or []
            for entry in entries:
                loaded = entry.get("locationOrLoadError") or {}
                if loaded.get("__typename") == "PythonError":
                    raise DemoFailed(
                        f"Dagster could not load {entry['name']}: {loaded.get('message', '')}"
                    )
            if entries and all(e["loadStatus"] == "LOADED" for e in entries):
                return
            if time.monotonic() > deadline:
                raise DemoFailed("Dagster did not load the example definitions in time")
            time.sleep(0.5)

    def run_tagged(self, key: str, value: str, *, deadline: float) -> str:
        """The id of the run carrying tag ``key=value``, once one exists."""
        variables = {"filter": {"tags": [{"key": key, "value": value}]}}
        while True:
            answer = self.query(_RUNS_TAGGED, variables)["runsOrError"]
            if answer.get("__typename") != "Runs":
                raise DemoFailed(f"Dagster's runs: {answer.get('message', answer)}")
            if answer["results"]:
                return str(answer["results"][0]["runId"])
            if time.monotonic() > deadline:
                raise DemoFailed(
                    f"the sensor {SENSOR} launched no run for the approved request "
                    f"(log: {self.stack.workdir / 'dagster.log'})"
                )
            time.sleep(1.0)

    def last_materialization(self, asset: str) -> str | None:
        """The run that last materialized ``asset``, per Dagster."""
        answer = self.query(_LAST_MATERIALIZATION, {"key": {"path": [asset]}})["assetOrError"]
        found = answer.get("assetMaterializations") or []
        return str(found[0]["runId"]) if found else None
