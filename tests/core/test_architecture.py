"""The rules of ARCHITECTURE.md, checked on the whole source tree.

The import rules are import-linter contracts in the root pyproject.toml: the core never
imports an orchestrator or an adapter, adapters never import each other nor the core's server
side, the client side needs nothing of the server side, the server-side packages import only
the layers below them, and the server reaches an orchestrator only through a notification
channel plugin. import-linter reads the source (it imports nothing), so the three adapters are
checked here too although no orchestrator is installed in this environment.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SOURCES = {
    "sluicegate": ROOT / "core" / "src",
    "sluicegate_airflow": ROOT / "airflow_provider" / "src",
    "dagster_sluicegate": ROOT / "dagster_integration" / "src",
    "prefect_sluicegate": ROOT / "prefect_integration" / "src",
}
#: A module longer than this says why in its docstring (ARCHITECTURE.md, "Modules").
LONGEST = 400


def test_the_import_contracts_hold() -> None:
    lint = Path(sys.executable).with_name("lint-imports")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(str(p) for p in SOURCES.values())}
    done = subprocess.run(
        [str(lint), "--no-cache", "--no-logo", str(ROOT / "pyproject.toml")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    # Every contract was checked, none skipped for want of a package to analyse.
    assert "Contracts: 6 kept, 0 broken." in done.stdout, done.stdout[-2000:]


def _modules() -> list[Path]:
    return sorted(
        path
        for package, src in SOURCES.items()
        for path in (src / package).rglob("*.py")
        if "migrations" not in path.parts
    )


def test_every_package_has_modules_to_check() -> None:
    counted = {package: 0 for package in SOURCES}
    for path in _modules():
        counted[path.relative_to(ROOT).parts[2]] += 1
    assert all(n > 3 for n in counted.values()), counted


def test_a_long_module_says_why_at_its_top() -> None:
    unexplained = []
    for path in _modules():
        text = path.read_text(encoding="utf-8")
        lines = text.count("\n")
        docstring = ast.get_docstring(ast.parse(text)) or ""
        if lines > LONGEST and f"longer than {LONGEST} lines" not in docstring.lower():
            unexplained.append(f"{path.relative_to(ROOT)} ({lines} lines)")
    assert not unexplained, (
        f"split these by concern, or say in the docstring why each is longer than {LONGEST} "
        f"lines: {', '.join(unexplained)}"
    )
