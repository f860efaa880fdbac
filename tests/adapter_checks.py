"""Checks every adapter's suite makes of its own distribution: it imports no other adapter or
orchestrator, and it pins the core and its orchestrator to the lines tested here.

Imported by tests/{airflow,dagster,prefect}/test_*install.py (pytest puts this folder on
sys.path for tests/conftest.py). Only the standard library and `packaging` (which every suite
environment has) here.
"""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys

#: Each adapter's import name, and the orchestrator it belongs to.
ADAPTERS = {
    "sluicegate_airflow": "airflow",
    "dagster_sluicegate": "dagster",
    "prefect_sluicegate": "prefect",
}


def assert_imports_no_other_adapter(package: str) -> None:
    """Import ``package`` in a fresh interpreter: no other adapter or orchestrator may load."""
    others = {name for pair in ADAPTERS.items() if pair[0] != package for name in pair}
    code = (
        f"import sys, {package}\n"
        f"bad = sorted(m for m in sys.modules if m.split('.')[0] in {sorted(others)!r})\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def assert_pinned_to_the_lines_tested_here(dist: str, names: tuple[str, ...]) -> None:
    """An adapter built against one line of each of ``names`` must not install beside a next
    one nobody tested: a compatible range of each, holding the version installed here."""
    from packaging.requirements import Requirement
    from packaging.version import Version

    required = {
        r.name: r.specifier for r in map(Requirement, importlib.metadata.requires(dist) or [])
    }
    for name in names:
        here = Version(importlib.metadata.version(name))
        assert here in required[name], (name, str(required[name]), here)
        nxt = Version(f"{here.major}.{here.minor + 1}")
        assert nxt not in required[name], f"{dist} allows {name} {nxt}: {required[name]}"
