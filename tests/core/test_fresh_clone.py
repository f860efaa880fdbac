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
    collected = _pytest(clone, "--collect-only", "-q", "tests/core")
    assert collected.returncode == 0, collected.stdout[-3000:] + collected.stderr[-3000:]
    assert "error" not in collected.stdout.splitlines()[-1].lower(), collected.stdout[-3000:]
    # The OpenLineage spec's own example event and a gate's events validate against the
    # schemas kept in tests/data, with the clone's code imported. The tests are found by name
    # in what the clone collected, wherever its layout puts them.
    ids = [line for line in collected.stdout.splitlines() if "::" in line]
    specs = next(i for i in ids if i.endswith("::test_the_specs_example_events_are_accepted"))
    events = next(i for i in ids if "::test_spec_examples_validate[" in i).split("::")[0]
    ran = _pytest(clone, "-q", specs, events)
    assert ran.returncode == 0, ran.stdout[-3000:] + ran.stderr[-3000:]
    assert " passed" in ran.stdout.splitlines()[-1]
    assert str(clone / "core" / "src") in _imported_from(clone)


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
