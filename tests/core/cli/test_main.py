"""The ``sluicegate`` script, as a user runs it: it is installed and answers ``--help``, ``python
-m sluicegate.cli`` is the same command, and an unreachable database is one line on stderr.

Only a real process proves these (a driver's warning or a message at the interpreter's exit
would reach the real stderr). The command groups' own tests run the root group in process
with click's ``CliRunner`` (``sluicegate.cli.cli``, which keeps the CLI's error contract however
it is called, the script's ``main`` included): the same parsing, the same one-line errors and
the same exit codes, without paying a Python start and every import for each call.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.core.support.cli import one_line_error, run


def test_help_lists_the_commands() -> None:
    proc = run("--help")
    assert proc.returncode == 0
    for command in ("audit", "demo", "policy", "requests", "serve", "token"):
        assert command in proc.stdout


def test_python_dash_m_is_the_same_command(tmp_path: Path) -> None:
    # Where the script is not installed (and for the demo's approver process).
    proc = subprocess.run(
        [sys.executable, "-m", "sluicegate.cli", "nonsense"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    one_line_error(proc, "No such command 'nonsense'")
    assert "(see 'sluicegate --help')" in proc.stderr  # named as the script, not as python -m


def test_unreachable_database_is_one_line_exit_2(tmp_path: Path) -> None:
    # As real processes: a driver's warning or a traceback on stderr would show here.
    one_line_error(
        run("audit", "verify", "--db", "postgresql://nobody@127.0.0.1:1/none"), "127.0.0.1"
    )
    one_line_error(
        run("audit", "verify", "--db", f"sqlite:///{tmp_path}/missing/dir/x.db"), "does not exist"
    )
    one_line_error(run("audit", "verify", "--db", "mysql://x/y"), "not supported")
