"""The test suite needs nothing outside the repository: a fresh clone, with nothing beside
it, collects every core test and validates lineage against the spec files it carries.

Run against the committed tree (``git clone`` of HEAD), as CI's clean clone of main is.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _clone(tmp_path: Path) -> Path:
    target = tmp_path / "sluicegate"
    done = subprocess.run(
        ["git", "clone", "--quiet", "--no-hardlinks", str(REPO), str(target)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert [p.name for p in target.parent.iterdir()] == ["sluicegate"]  # nothing beside it
    return target


def _pytest(clone: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "SLUICEGATE_OPENLINEAGE_SPEC"}
    env["PYTHONPATH"] = str(clone / "core" / "src")
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args],
        cwd=clone,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_a_fresh_clone_collects_every_core_test_and_validates_lineage(tmp_path: Path) -> None:
    clone = _clone(tmp_path)
    # The OpenLineage spec's own example event and a gate's events validate against the
    # schemas kept in tests/data, with the clone's code imported. One pytest run (a run's start
    # and collection are most of this test's CPU): it collects every core test, and fails on
    # any collection error, then runs only those, found by name wherever the layout puts them.
    events = _module_defining(clone, "test_spec_examples_validate")
    chosen = f"{events.name} or test_the_specs_example_events_are_accepted"
    ran = _pytest(clone, "-v", "tests/core", "-k", chosen)
    assert ran.returncode == 0, ran.stdout[-3000:] + ran.stderr[-3000:]
    closing = ran.stdout.splitlines()[-1]
    assert " passed" in closing and " deselected" in closing, closing
    assert "error" not in closing.lower(), ran.stdout[-3000:]
    passed = [line for line in ran.stdout.splitlines() if " PASSED" in line]
    assert any("::test_the_specs_example_events_are_accepted PASSED" in p for p in passed)
    assert any("::test_spec_examples_validate[" in p for p in passed), passed
    assert str(clone / "core" / "src") in _imported_from(clone)


def _module_defining(clone: Path, test: str) -> Path:
    [found] = [
        path
        for path in (clone / "tests" / "core").rglob("test_*.py")
        if f"def {test}(" in path.read_text(encoding="utf-8")
    ]
    return found


def _imported_from(clone: Path) -> str:
    done = subprocess.run(
        [sys.executable, "-c", "import sluicegate; print(sluicegate.__file__)"],
        cwd=clone,
        env={**os.environ, "PYTHONPATH": str(clone / "core" / "src")},
        capture_output=True,
        text=True,
        timeout=60,
    )
    return done.stdout
