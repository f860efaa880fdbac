"""The commands ``sluicegate demo`` prints run as printed, from any shell and folder.

A user copies a printed line into a terminal that has not activated the demo's environment:
so the lines are run through a shell, in another folder, with the environment's bin/ taken
off PATH and no SLUICEGATE_* variable set.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

SLUICEGATE = str(Path(sys.executable).with_name("sluicegate"))


def _user_env() -> dict[str, str]:
    """The environment of a shell where the demo's virtualenv is not activated."""
    venv_bin = str(Path(sys.executable).parent)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLUICEGATE_", "VIRTUAL_ENV"))}
    path = [p for p in env.get("PATH", "").split(os.pathsep) if p and p != venv_bin]
    env["PATH"] = os.pathsep.join(path)
    return env


def _shell(line: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        line, shell=True, cwd=cwd, env=_user_env(), capture_output=True, text=True, timeout=60
    )


def _printed(lines: list[str], words: str) -> list[str]:
    """The printed lines that contain ``words`` (the indentation taken off)."""
    return [x.strip() for x in lines if words in x]


def test_printed_commands_run_as_printed(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    demo = subprocess.Popen(
        [SLUICEGATE, "demo", "--wait", "60"],  # interactive: nobody approves but the user
        cwd=tmp_path,
        env={**_user_env(), "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    killer = threading.Timer(120, demo.kill)  # never hang the suite
    killer.start()
    try:
        assert demo.stdout is not None
        lines: list[str] = []
        for line in demo.stdout:
            lines.append(line.rstrip("\n"))
            if "waiting up to" in line:
                break
        approve = _printed(lines, " requests approve ")
        assert approve, lines
        for line in approve:
            done = _shell(line, elsewhere)  # the reviewer runs the line as printed
            assert done.returncode == 0, (line, done.stdout, done.stderr)
            assert " pending " in done.stdout or " approved " in done.stdout, done.stdout
        # One line for each reviewer who may approve (carol owns the job, erin is no steward).
        assert [x.rsplit("# as ", 1)[-1] for x in approve] == ["alice", "bob"], approve
        rest = demo.stdout.read()
        assert demo.wait(timeout=60) == 0, rest
    finally:
        killer.cancel()
        demo.kill()
    lines += rest.splitlines()
    assert any("approved by alice, bob; the step resumed" in x for x in lines), rest

    # After the demo ended: its database stays, and the audit commands read it.
    line = next(x for x in lines if x.startswith("The demo's database stays in "))
    folder = Path(line.split(" stays in ")[1].split(" (")[0])
    assert (folder / "sluicegate.db").is_file()
    (verify,) = _printed(lines, " audit verify ")
    done = _shell(verify, elsewhere)
    assert done.returncode == 0, (verify, done.stderr)
    assert "intact" in done.stdout and "14 rows" in done.stdout, done.stdout
    (export,) = _printed(lines, " audit export ")
    done = _shell(export, elsewhere)
    assert done.returncode == 0, (export, done.stderr)
    assert done.stdout.startswith("seq,") and done.stdout.count("\n") == 15, done.stdout
    assert ",bob," in done.stdout and ",alice," in done.stdout
    (create,) = _printed(lines, " token create ")
    done = _shell(create, elsewhere)  # a fresh review token, on the demo's database
    assert done.returncode == 0, (create, done.stderr)
    assert done.stdout.startswith("sgrev_"), done.stdout
    assert not list(elsewhere.iterdir())  # nothing made a ./sluicegate.db where it ran
    shutil.rmtree(folder)  # the demo keeps it for its user; the test is done with it


def test_demo_with_an_orchestrator_that_is_not_installed_says_how_to_get_it(
    tmp_path: Path,
) -> None:
    # The core environment has no Airflow: one line naming the command that installs it.
    done = subprocess.run(
        [SLUICEGATE, "demo", "--with", "airflow"],
        cwd=tmp_path,
        env=_user_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr, done.stderr
    assert "python3 dev.py demo --with airflow" in done.stderr
    assert not list(tmp_path.iterdir())  # nothing started, nothing written
