"""``SluicegateResource`` in real Dagster: the gates of a process share one client (and its
connection); once the server is gone, that connection lets no later gate through.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.dagster.support import defs, materialize
from tests.gate_harness import GateHarness

pytestmark = pytest.mark.usefixtures("fresh_marks")


def test_a_server_gone_after_earlier_gates_still_fails_the_next_gate_closed(
    tmp_path: Path,
) -> None:
    from dagster import DagsterEventType

    # The gates of a process keep one connection alive between them: once the server is
    # gone, that connection must not let a later gate through.
    g = defs()
    names = ("URL", "TOKEN", "MARKS", "MAX_WAIT")
    saved = {f"SLUICEGATE_TEST_{k}": os.environ[f"SLUICEGATE_TEST_{k}"] for k in names}
    with GateHarness.serving(tmp_path, requester="dagster-prod") as own:
        os.environ.update(
            SLUICEGATE_TEST_URL=own.url,
            SLUICEGATE_TEST_TOKEN=own.request_token,
            SLUICEGATE_TEST_MARKS=str(own.marks),
            SLUICEGATE_TEST_MAX_WAIT="1",
        )
        try:
            assert materialize([g.orders_summary]).success
            assert materialize([g.orders_summary]).success
            own.forget()
            own.server.kill()
            result = materialize([g.orders_summary], raise_on_error=False)
        finally:
            os.environ.update(saved)
    assert not result.success and not own.ran("orders_summary")
    (failure,) = [e for e in result.all_events if e.event_type == DagsterEventType.STEP_FAILURE]
    assert "could not open the gate" in failure.step_failure_data.error.message
