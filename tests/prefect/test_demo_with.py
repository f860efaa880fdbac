"""``sluicegate demo --with prefect``, run as a user runs it: one command, real processes.

It starts the approval server and ``prefect server start``, serves the example flow, runs its
deployment to the gate, has alice and bob approve from a second process, and ends once
Prefect says the flow run Completed. What Prefect recorded is read afterwards from the
server's database in the work folder, and no process the demo started may outlive it.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import uuid
from pathlib import Path

from tests.demo_harness import UUID, assert_review_printed, run_unattended, survivors, workdir_of


def _states(database: Path, flow_run_id: str) -> list[str]:
    """The flow run's state history, as Prefect's server recorded it in its database."""
    from prefect.server import models
    from prefect.server.database import provide_database_interface
    from prefect.settings import PREFECT_API_DATABASE_CONNECTION_URL, temporary_settings

    async def read() -> list[str]:
        db = provide_database_interface()
        async with db.session_context() as session:
            history = await models.flow_run_states.read_flow_run_states(
                session, uuid.UUID(flow_run_id)
            )
        return [state.name for state in history]

    url = f"sqlite+aiosqlite:///{database}"
    with temporary_settings({PREFECT_API_DATABASE_CONNECTION_URL: url}):
        return asyncio.run(read())


def test_demo_with_prefect_resumes_the_paused_flow_run_once_approved(tmp_path: Path) -> None:
    code, output, ui_status = run_unattended("prefect", tmp_path, ui_check="/api/health")
    assert code == 0, output

    workdir = workdir_of(output)
    try:
        assert ui_status == 200, output
        request_id = assert_review_printed(output)
        flow_run_id = re.search(rf"http://127\.0\.0\.1:\d+/runs/flow-run/({UUID})", output)[1]  # type: ignore[index]

        # What Prefect recorded: the run paused at the gate, ran again, and completed.
        states = _states(workdir / "prefect-home" / "prefect.db", flow_run_id)
        assert states[-3:] == ["Paused", "Running", "Completed"], states
        # The Sluicegate server resumed it through Prefect's API (the gate's own fallback,
        # for a server that cannot reach Prefect, says so in the flow's log).
        flow_log = (workdir / "prefect-flow.log").read_text()
        assert f"request {request_id} approved; going on" in flow_log, flow_log
        assert "did not resume this flow run" not in flow_log, flow_log

        assert survivors(workdir) == []
    finally:
        shutil.rmtree(workdir, ignore_errors=True)  # the demo keeps it for its user
