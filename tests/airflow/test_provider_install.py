"""The Airflow provider is installed, importable and discovered by Airflow."""

from __future__ import annotations

import importlib.metadata
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from adapter_checks import assert_imports_no_other_adapter, assert_pinned_to_the_lines_tested_here

DIST = "airflow-provider-sluicegate"


def test_package_imports_with_its_version() -> None:
    import sluicegate_airflow

    assert sluicegate_airflow.__version__ == importlib.metadata.version(DIST)
    assert set(sluicegate_airflow.__all__) >= {"__version__", "get_provider_info"}
    assert (Path(sluicegate_airflow.__file__).parent / "py.typed").is_file()


def test_airflow_is_3_3() -> None:
    import airflow

    assert importlib.metadata.version("apache-airflow").startswith("3.3.")
    assert airflow.__version__.startswith("3.3.")


def test_entry_point_is_registered() -> None:
    eps = importlib.metadata.entry_points(group="apache_airflow_provider")
    ours = [ep for ep in eps if ep.dist is not None and ep.dist.name == DIST]
    assert [(ep.name, ep.value) for ep in ours] == [
        ("provider_info", "sluicegate_airflow:get_provider_info")
    ]


def test_provider_info_matches_airflow_schema() -> None:
    import airflow
    import jsonschema

    from sluicegate_airflow import get_provider_info

    info = get_provider_info()
    schema_path = Path(airflow.__file__).parent / "provider_info.schema.json"
    jsonschema.validate(info, json.loads(schema_path.read_text()))
    assert info["package-name"] == DIST
    assert info["versions"][0] == importlib.metadata.version(DIST)


def test_providers_manager_discovers_the_provider() -> None:
    from airflow.providers_manager import ProvidersManager

    providers = ProvidersManager().providers
    assert DIST in providers, sorted(providers)
    provider = providers[DIST]
    assert provider.version == importlib.metadata.version(DIST)
    assert provider.data["name"] == "Sluicegate"


def test_airflow_providers_list_shows_the_provider(tmp_path: Path) -> None:
    # What a data engineer runs after `pip install airflow-provider-sluicegate`, in a fresh
    # AIRFLOW_HOME (without the tests' unit-test mode, which logs its own line to stdout).
    env = {k: v for k, v in os.environ.items() if k != "AIRFLOW__CORE__UNIT_TEST_MODE"}
    out = subprocess.run(
        [sys.executable, "-m", "airflow", "providers", "list", "-o", "json"],
        capture_output=True, text=True, timeout=120, check=False,
        env={**env, "AIRFLOW_HOME": str(tmp_path)},
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    listed = {p["package_name"]: p for p in json.loads(out.stdout)}
    assert listed[DIST]["version"] == importlib.metadata.version(DIST)


@pytest.mark.parametrize("other", ["dagster", "prefect"])
def test_no_other_orchestrator_installed(other: str) -> None:
    # An Airflow user never installs Dagster or Prefect (DESIGN.md section 1).
    with pytest.raises(importlib.metadata.PackageNotFoundError):
        importlib.metadata.version(other)


def test_imports_no_other_adapter() -> None:
    assert_imports_no_other_adapter("sluicegate_airflow")


def test_the_core_and_airflow_are_pinned_to_the_lines_tested_here() -> None:
    assert_pinned_to_the_lines_tested_here(DIST, ("sluicegate", "apache-airflow"))
