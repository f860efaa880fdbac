"""The ``sluicegate`` command in the CLI's tests: the installed script as a user runs it, and
the one-line error every mistake must be.

The in-process twin of :func:`run` (click's ``CliRunner`` on the root group) is the
``sluicegate`` fixture of tests/core/cli/conftest.py.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

#: The environment's own ``sluicegate`` script.
SLUICEGATE = str(Path(sys.executable).with_name("sluicegate"))

#: ``sluicegate ARGS`` in process, answered like :func:`run`: the ``sluicegate`` fixture.
Sluicegate = Callable[..., subprocess.CompletedProcess[str]]


def run(
    *args: str, cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """The installed script, run as a user runs it, with no SLUICEGATE_* variable but ``env``."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("SLUICEGATE_")}
    return subprocess.run(
        [SLUICEGATE, *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
        env={**base, **(env or {})},
    )


def one_line_error(proc: subprocess.CompletedProcess[str], fragment: str) -> None:
    """Exit 2 and one line on stderr, no traceback, naming ``fragment``."""
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith("sluicegate: error: "), proc.stderr
    assert proc.stderr.count("\n") == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert fragment in proc.stderr
