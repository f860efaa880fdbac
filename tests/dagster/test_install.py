"""The Dagster integration is installed and importable, next to Dagster 1.13."""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys
from pathlib import Path

import pytest

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
    code = (
        "import sys, dagster_sluicegate\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
        "{'airflow', 'sluicegate_airflow', 'prefect', 'prefect_sluicegate'})\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
