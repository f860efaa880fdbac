"""Checks every adapter's suite makes of its own distribution: none of its modules imports
another adapter, another orchestrator or the core's server or store, and it pins the core and
its orchestrator to the lines tested here.

Imported by tests/{airflow,dagster,prefect}/test_*install.py as ``tests.adapter_checks`` (see
tests/__init__.py). Only the standard library and `packaging` (which every suite
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


#: Core modules no adapter may load: the server and the store run on the server's host, never
#: in a task (an adapter talks to them over HTTP only).
SERVER_SIDE = ("sluicegate.server", "sluicegate.store")

#: Run in a fresh interpreter by :func:`assert_imports_no_other_adapter`: imports every module
#: of ``package`` in turn (walked with pkgutil) and prints, as JSON, each module that loaded a
#: forbidden one, with those it loaded.
_EVERY_MODULE = """
import importlib, json, pkgutil, sys
package, others, server_side = sys.argv[1], set(sys.argv[2].split(",")), tuple(sys.argv[3:])

def forbidden():
    return {
        m for m in sys.modules
        if m.split(".")[0] in others or any(m == s or m.startswith(s + ".") for s in server_side)
    }

root = importlib.import_module(package)
names = [package] + [
    info.name
    # a package that fails to import raises its own error (pkgutil would skip it)
    for info in pkgutil.walk_packages(root.__path__, package + ".", onerror=importlib.import_module)
]
seen, bad = set(), {}
for name in names:
    importlib.import_module(name)
    found = forbidden() - seen  # what this module brought in (loads only ever add)
    if found:
        bad[name] = sorted(found)
    seen |= found
print(json.dumps({"modules": names, "bad": bad}))
"""


def assert_imports_no_other_adapter(package: str) -> list[str]:
    """Import every module of ``package`` in a fresh interpreter: none may load another adapter,
    another orchestrator, or the core's server or store. Returns the modules checked.

    One interpreter for all of them: a module's imports stay loaded, so each forbidden module
    is seen after the first module that brings it in, and that one is named.
    """
    import json

    others = sorted({name for pair in ADAPTERS.items() if pair[0] != package for name in pair})
    out = subprocess.run(
        [sys.executable, "-c", _EVERY_MODULE, package, ",".join(others), *SERVER_SIDE],
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 0, f"importing the modules of {package} failed:\n{out.stderr[-3000:]}"
    report = json.loads(out.stdout.splitlines()[-1])
    assert not report["bad"], f"modules of {package} that load what they must not: {report['bad']}"
    modules: list[str] = report["modules"]
    return modules


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
