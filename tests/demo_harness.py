"""What the three ``sluicegate demo --with <orchestrator>`` tests share: where the demo says
its work folder is, and which of the processes it started outlived it.

Imported by tests/{airflow,dagster,prefect}/test_demo_with.py as ``tests.demo_harness`` (see
tests/__init__.py). Only pytest and the standard library here: each suite's
environment loads it.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
from pathlib import Path

#: The suite environment's own console script, run as a user runs it.
SLUICEGATE = str(Path(sys.executable).with_name("sluicegate"))
EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"


def workdir_of(output: str) -> Path:
    """The work folder the demo printed (it keeps logs and state there)."""
    found = re.search(r"^Work folder \(logs, state; kept after the demo\): (\S+)$", output, re.M)
    assert found, output
    return Path(found.group(1))


def survivors(workdir: Path) -> list[str]:
    """Processes the demo started that are still alive: a member of a process group it
    recorded in ``processes.log``, or any process whose command line or environment names its
    work folder (the orchestrator's home is in it, so this catches one that left its group)."""
    # processes.log: "<pid> <name> <argv>" per start (an argv may run over several lines).
    record = (workdir / "processes.log").read_text()
    groups = {int(pid) for pid in re.findall(r"^(\d+) [\w-]+ /", record, re.M)}
    assert len(groups) >= 2, record  # the approval server and the orchestrator, at least
    marker = str(workdir).encode()
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if (proc / "stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
                continue  # a zombie is dead already, only not yet reaped by its parent
            pgid = os.getpgid(int(proc.name))
            cmdline = (proc / "cmdline").read_bytes()
            environ = (proc / "environ").read_bytes()
        except (OSError, IndexError):
            continue  # gone meanwhile, or not ours to read
        if pgid in groups or marker in cmdline or marker in environ:
            command = cmdline.replace(b"\0", b" ").decode(errors="replace")
            found.append(f"{proc.name} (group {pgid}): {command[:200]}")
    return found


def run_unattended(orchestrator: str, cwd: Path, *, ui_check: str) -> tuple[int, str, int | None]:
    """Run ``sluicegate demo --with <orchestrator> --approve-as alice,bob`` to its end, as a
    user runs it; while it runs, GET ``ui_check`` under the UI address it prints
    (``<Name> UI: <url> ...``), to see that the address is live. Returns the exit code, the
    output and that GET's status (None if no UI address was printed)."""
    import httpx

    demo = subprocess.Popen(
        [SLUICEGATE, "demo", "--with", orchestrator, "--approve-as", "alice,bob", "--wait", "180"],
        cwd=cwd,
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
            if line.startswith(f"{orchestrator.capitalize()} UI: "):
                ui_status = httpx.get(f"{line.split()[2]}{ui_check}", timeout=30).status_code
        code = demo.wait(timeout=60)
    finally:
        killer.cancel()
    return code, "\n".join(lines), ui_status


def assert_review_printed(output: str) -> str:
    """A signed link and a ready approve command for each steward; the request's id."""
    found = re.search(rf"request ({UUID})", output)
    assert found, output
    request_id = found.group(1)
    for reviewer in ("alice", "bob"):
        assert re.search(rf"{reviewer}: http://127\.0\.0\.1:\d+/r/{request_id}\?t=\S+", output)
        command = rf"requests approve {request_id} .*--token sgrev_\S+\s+# as {reviewer}"
        assert re.search(command, output)
    return request_id
