"""``sluicegate demo --with dagster``, run as a user runs it: one command, real processes.

It starts the approval server and ``dagster dev``, launches the example's gated export, has
alice and bob approve from a second process, and ends once the approval sensor's run has
materialized the export. What Dagster itself recorded is read afterwards from the instance
the demo left in its work folder, and no process it started may outlive it.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from tests.demo_harness import UUID, assert_review_printed, run_unattended, survivors, workdir_of

ASSET = "nightly_partner_export"


def test_demo_with_dagster_runs_the_gated_export_once_approved(tmp_path: Path) -> None:
    code, output, ui_status = run_unattended("dagster", tmp_path, ui_check="/server_info")
    assert code == 0, output

    workdir = workdir_of(output)
    try:
        assert ui_status == 200, output
        request_id = assert_review_printed(output)
        runs = re.findall(rf"http://127\.0\.0\.1:\d+/runs/({UUID})", output)
        first, second = runs[0], runs[-1]
        assert first != second, output

        # What Dagster recorded, from its own instance: the launched run ended at the gate
        # without materializing; the sensor's run carries the approved request and did.
        from dagster import AssetKey, DagsterInstance, DagsterRunStatus

        with DagsterInstance.from_config(str(workdir / "dagster-home")) as instance:
            gated = instance.get_run_by_id(first)
            resumed = instance.get_run_by_id(second)
            assert gated is not None and resumed is not None
            assert gated.status == DagsterRunStatus.SUCCESS
            assert resumed.status == DagsterRunStatus.SUCCESS
            assert resumed.tags["sluicegate/request_id"] == request_id
            assert resumed.tags["sluicegate/approvers"] == "alice,bob"
            materialized = instance.get_latest_materialization_event(AssetKey(ASSET))
            assert materialized is not None and materialized.run_id == second

        assert survivors(workdir) == []
    finally:
        shutil.rmtree(workdir, ignore_errors=True)  # the demo keeps it for its user
