"""``sluicegate demo --with dagster``, run as a user runs it: one command, real processes.

It starts the approval server and ``dagster dev``, launches the example's gated export, has
alice and bob approve from a second process, and ends once the approval sensor's run has
materialized the export. What Dagster itself recorded is read afterwards from the instance
the demo left in its work folder, and no process it started may outlive it.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import httpx

SLUICEGATE = str(Path(sys.executable).with_name("sluicegate"))
ASSET = "nightly_partner_export"
UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"


def _survivors(workdir: Path) -> list[str]:
    """Processes still alive that the demo started: a process group it recorded, or any
    process whose command line or environment names its work folder (DAGSTER_HOME, TMPDIR)."""
    # processes.log: "<pid> <name> <argv>" per start (an argv may run over several lines).
    record = (workdir / "processes.log").read_text()
    groups = {int(pid) for pid in re.findall(r"^(\d+) [\w-]+ /", record, re.M)}
    assert groups, record
    marker = str(workdir).encode()
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if (proc / "stat").read_text().split()[2] == "Z":
                continue  # a zombie is dead already, only not yet reaped by its parent
            pgid = os.getpgid(int(proc.name))
            cmdline = (proc / "cmdline").read_bytes()
            environ = (proc / "environ").read_bytes()
        except (OSError, IndexError):
            continue  # gone meanwhile
        if pgid in groups or marker in cmdline or marker in environ:
            command = cmdline.replace(b"\0", b" ").decode(errors="replace")
            found.append(f"{proc.name}: {command[:200]}")
    return found


def test_demo_with_dagster_runs_the_gated_export_once_approved(tmp_path: Path) -> None:
    demo = subprocess.Popen(
        [SLUICEGATE, "demo", "--with", "dagster", "--approve-as", "alice,bob", "--wait", "180"],
        cwd=tmp_path,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    killer = threading.Timer(420, demo.kill)  # never hang the suite
    killer.start()
    lines: list[str] = []
    ui_status = None
    try:
        assert demo.stdout is not None
        for line in demo.stdout:
            lines.append(line.rstrip("\n"))
            if line.startswith("Dagster UI: "):
                # The printed address is Dagster's UI, live while the demo runs.
                ui = line.split()[2]
                ui_status = httpx.get(f"{ui}/server_info", timeout=30).status_code
        code = demo.wait(timeout=60)
    finally:
        killer.cancel()
    output = "\n".join(lines)
    assert code == 0, output

    workdir = Path(re.search(r"^Work folder .*: (\S+)$", output, re.M)[1])  # type: ignore[index]
    try:
        assert ui_status == 200, output
        request_id = re.search(rf"request ({UUID})", output)[1]  # type: ignore[index]
        for reviewer in ("alice", "bob"):  # a signed link and a ready command for each steward
            assert re.search(rf"{reviewer}: http://127\.0\.0\.1:\d+/r/{request_id}\?t=\S+", output)
            assert re.search(
                rf"requests approve {request_id} .*--token sgrev_\S+\s+# as {reviewer}", output
            )
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

        assert _survivors(workdir) == []
    finally:
        shutil.rmtree(workdir, ignore_errors=True)  # the demo keeps it for its user
