"""Dagster test setup, and the Sluicegate server the gate tests share (``env``: the adapters'
harness, tests/gate_harness.py; ``fresh_marks`` for the modules whose tests leave marks).

This folder only runs in the dagster environment (``python3 dev.py test --only dagster``);
elsewhere it is left out of collection, so a bare ``pytest`` in another environment does not
fail on a missing Dagster.
"""

from __future__ import annotations

import importlib.util
import os

import pytest

from tests.gate_harness import GateHarness, gate_harness

if importlib.util.find_spec("dagster") is None:
    collect_ignore_glob = ["test_*.py"]


def _point_dagster_at(gate: GateHarness) -> None:
    # gated_defs.py's resource reads these (see its docstring)
    os.environ.update(
        SLUICEGATE_TEST_URL=gate.url,
        SLUICEGATE_TEST_TOKEN=gate.request_token,
        SLUICEGATE_TEST_MARKS=str(gate.marks),
        SLUICEGATE_TEST_MAX_WAIT="60",
    )


#: A Sluicegate server on the example policy, per test module that uses it.
env = gate_harness(requester="dagster-prod", ready=_point_dagster_at)


@pytest.fixture
def fresh_marks(env: GateHarness) -> None:
    """No step's mark left from an earlier test (``pytestmark = usefixtures(...)``)."""
    env.forget()
