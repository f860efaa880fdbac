"""The CLI's fixtures: ``sluicegate ARGS`` in process."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from sluicegate.cli import cli
from tests.core.support.cli import Sluicegate


@pytest.fixture
def sluicegate(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Sluicegate:
    """``sluicegate ARGS`` through ``CliRunner`` in this process, with no SLUICEGATE_*
    variable but the ``env`` given, in the test's own folder: its exit code, stdout and stderr,
    as :func:`run` gives them."""
    for name in list(os.environ):
        if name.startswith("SLUICEGATE_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()

    def call(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        # catch_exceptions=False: an exception past the CLI's own boundary fails the test.
        result = runner.invoke(cli, args, env=env, catch_exceptions=False)
        return subprocess.CompletedProcess(
            ["sluicegate", *args], result.exit_code, result.stdout, result.stderr
        )

    return call
