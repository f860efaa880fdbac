"""Prefect test setup: a throwaway PREFECT_HOME, set before anything imports Prefect, the
temporary Prefect API server the flows run against (``prefect_api``), and the Sluicegate
servers the gate tests share (``sg``, ``deaf``, ``quick``, ``strict``: the adapters' harness,
tests/gate_harness.py, each with a Prefect block of its name).

This folder only runs in the prefect environment (``python3 dev.py test --only prefect``);
elsewhere it is left out of collection, so a bare ``pytest`` in another environment does not
fail on a missing Prefect.
"""

from __future__ import annotations

import atexit
import importlib.util
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.core.support.serverproc import POLICY, free_port
from tests.gate_harness import GateHarness, gate_harness

_home = tempfile.mkdtemp(prefix="sluicegate-prefect-home-")
atexit.register(shutil.rmtree, _home, ignore_errors=True)
os.environ["PREFECT_HOME"] = _home

if importlib.util.find_spec("prefect") is None:
    collect_ignore_glob = ["test_*.py"]


@pytest.fixture(scope="session")
def prefect_api() -> Iterator[str]:
    """``prefect_test_harness``: a temporary Prefect API server (its own SQLite database),
    started once per test process and shared by the test modules: each test names its own
    flow runs and blocks, and starting one costs some 20 s of a Prefect server's imports and
    migrations."""
    from prefect.settings import PREFECT_API_URL
    from prefect.testing.utilities import prefect_test_harness

    # Its start takes 20 s on an idle machine, a minute or more beside the other suites.
    with prefect_test_harness(server_startup_timeout=300):
        url = PREFECT_API_URL.value()
        assert url, "the harness set no API URL"
        yield str(url)


def _save_block(gate: GateHarness) -> None:
    # The flows find their server through a block named after it (``config=sg.name``).
    from prefect_sluicegate import SluicegateConfig, blocks

    SluicegateConfig(server_url=gate.url, token=gate.request_token).save(gate.name, overwrite=True)
    # A later module's server saves the same name anew: its gates must not be served the
    # block an earlier module's gates read (this test process keeps it for a minute).
    blocks._LOADED.pop(gate.name, None)


def prefect_gate(name: str, policy: Path | str = POLICY, *, reachable: bool = True) -> Any:
    """A module-scoped fixture: a Sluicegate server (:func:`tests.gate_harness.gate_harness`)
    that resumes paused runs through ``prefect_api`` (or, ``reachable=False``, through a URL
    that leads nowhere), with a ``SluicegateConfig`` block named ``name`` pointing at it."""

    def server_env(prefect_api: str) -> dict[str, str]:
        url = prefect_api if reachable else f"http://127.0.0.1:{free_port()}/api"
        return {"SLUICEGATE_PREFECT__API_URL": url}

    return gate_harness(
        name,
        requester="prefect-prod",
        policy=policy,
        log_level="info",
        needs=("prefect_api",),
        server_env=server_env,
        ready=_save_block,
    )


#: Rules that time out after 2 s: deploys then go ahead, deletes do not.
QUICK_POLICY = """\
version: 1
default: allow
reviewers:
  - {id: alice, groups: [data-stewards]}
  - {id: bob, groups: [data-stewards]}
rules:
  - name: deploy-unless-objected
    match: {actions: [deploy]}
    outcome: require
    require: {approvals: 1, groups: [data-stewards], timeout: 2s, on_timeout: allow}
  - name: delete-needs-a-yes
    match: {actions: [delete]}
    outcome: require
    require: {approvals: 1, groups: [data-stewards], timeout: 2s, on_timeout: deny}
"""

#: Every export of PII denied outright (no pause): test_declared_datasets.py.
NO_PII_LEAVES = """\
version: 1
default: allow
reviewers:
  - {id: alice, groups: [data-stewards]}
  - {id: bob, groups: [data-stewards]}
classify:
  - datasets: ["crm.public.customers*"]
    add: [pii]
rules:
  - name: no-pii-leaves
    match: {actions: [export], classifications: [pii]}
    outcome: deny
    reason: PII never leaves the warehouse.
"""

#: The example policy's server.
sg = prefect_gate("sluicegate")
#: A server whose Prefect API URL leads nowhere: it can never resume a run.
deaf = prefect_gate("deaf", reachable=False)
#: A server on QUICK_POLICY.
quick = prefect_gate("quick", QUICK_POLICY)
#: A server on NO_PII_LEAVES.
strict = prefect_gate("strict", NO_PII_LEAVES)
