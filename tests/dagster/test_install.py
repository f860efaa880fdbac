"""The Dagster integration is installed and importable, next to Dagster 1.13."""

from __future__ import annotations

import importlib.metadata
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.adapter_checks import (
    assert_imports_no_other_adapter,
    assert_pinned_to_the_lines_tested_here,
)

DIST = "dagster-sluicegate"


def test_package_imports_with_its_version() -> None:
    import dagster_sluicegate

    assert dagster_sluicegate.__version__ == importlib.metadata.version(DIST)
    assert "__version__" in dagster_sluicegate.__all__
    assert (Path(dagster_sluicegate.__file__).parent / "py.typed").is_file()


def test_dagster_is_1_13() -> None:
    import dagster

    assert importlib.metadata.version("dagster").startswith("1.13.")
    assert dagster.__version__.startswith("1.13.")


@pytest.mark.parametrize("other", ["apache-airflow", "prefect"])
def test_no_other_orchestrator_installed(other: str) -> None:
    # A Dagster user never installs Airflow or Prefect (DESIGN.md section 1).
    with pytest.raises(importlib.metadata.PackageNotFoundError):
        importlib.metadata.version(other)


def test_imports_no_other_adapter() -> None:
    import dagster_sluicegate

    checked = assert_imports_no_other_adapter("dagster_sluicegate")
    # every module of the package was imported and checked, not only its __init__
    folder = Path(dagster_sluicegate.__file__).parent
    modules = {f"dagster_sluicegate.{p.stem}" for p in folder.glob("*.py") if p.stem != "__init__"}
    assert {"dagster_sluicegate.gate", "dagster_sluicegate.demo"} <= modules <= set(checked)


def test_the_demo_is_registered_for_sluicegate_demo_with_dagster() -> None:
    (entry,) = importlib.metadata.entry_points(group="sluicegate.demos", name="dagster")
    assert entry.dist is not None and entry.dist.name == DIST
    demo = entry.load()
    assert demo.__name__ == "dagster_sluicegate.demo"
    assert callable(demo.missing) and callable(demo.run)


def test_the_core_and_dagster_are_pinned_to_the_lines_tested_here() -> None:
    assert_pinned_to_the_lines_tested_here(DIST, ("sluicegate", "dagster"))


def _python_blocks(markdown: Path) -> list[str]:
    """The ```python blocks of ``markdown`` that build a SluicegateResource."""
    blocks = re.findall(r"```python\n(.*?)```", markdown.read_text(encoding="utf-8"), re.S)
    return [b for b in blocks if "SluicegateResource(" in b]


def test_the_documented_definitions_type_check(tmp_path: Path) -> None:
    # mypy, strict as the project configures it, on what a user copies: the READMEs'
    # SluicegateResource(...) calls and examples/dagster/definitions.py. (The READMEs elide
    # bodies as `...`, which strict mypy calls an empty body: that code alone is let through.)
    root = Path(__file__).resolve().parents[2]
    files = [root / "examples" / "dagster" / "definitions.py"]
    for n, readme in enumerate([root / "dagster_integration" / "README.md"]):
        blocks = _python_blocks(readme)
        assert blocks, f"{readme} shows no SluicegateResource(...) call"
        for m, block in enumerate(blocks):
            files.append(tmp_path / f"readme_{n}_{m}.py")
            files[-1].write_text(block, encoding="utf-8")
    out = subprocess.run(
        [sys.executable, "-m", "mypy", "--config-file", str(root / "pyproject.toml"),
         "--cache-dir", str(root / ".mypy_cache" / "dagster-docs"),
         "--disable-error-code", "empty-body", *map(str, files)],
        capture_output=True, text=True, cwd=root, timeout=300, check=False,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
