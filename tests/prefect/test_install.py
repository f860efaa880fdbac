"""The Prefect integration is installed, importable and registered as a Prefect collection."""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

import pytest

from tests.adapter_checks import (
    assert_imports_no_other_adapter,
    assert_pinned_to_the_lines_tested_here,
)

DIST = "prefect-sluicegate"


def test_package_imports_with_its_version() -> None:
    import prefect_sluicegate

    assert prefect_sluicegate.__version__ == importlib.metadata.version(DIST)
    assert "__version__" in prefect_sluicegate.__all__
    assert (Path(prefect_sluicegate.__file__).parent / "py.typed").is_file()


def test_prefect_is_3_9() -> None:
    import prefect

    assert importlib.metadata.version("prefect").startswith("3.9.")
    assert prefect.__version__.startswith("3.9.")


def test_collection_entry_point_is_registered_and_loads() -> None:
    import prefect_sluicegate

    eps = importlib.metadata.entry_points(group="prefect.collections")
    ours = [ep for ep in eps if ep.dist is not None and ep.dist.name == DIST]
    assert [(ep.name, ep.value) for ep in ours] == [("prefect_sluicegate", "prefect_sluicegate")]
    assert ours[0].load() is prefect_sluicegate


def test_prefect_loads_the_collection() -> None:
    from prefect.plugins import load_prefect_collections

    import prefect_sluicegate

    collections = load_prefect_collections()
    assert collections.get("prefect_sluicegate") is prefect_sluicegate, collections


@pytest.mark.parametrize("other", ["apache-airflow", "dagster"])
def test_no_other_orchestrator_installed(other: str) -> None:
    # A Prefect user never installs Airflow or Dagster (DESIGN.md section 1).
    with pytest.raises(importlib.metadata.PackageNotFoundError):
        importlib.metadata.version(other)


def test_imports_no_other_adapter() -> None:
    import prefect_sluicegate

    checked = assert_imports_no_other_adapter("prefect_sluicegate")
    # every module of the package, the demo's Prefect part included, was imported and checked
    src = Path(prefect_sluicegate.__file__).parent
    files = {f"prefect_sluicegate.{p.stem}" for p in src.glob("*.py") if p.stem != "__init__"}
    assert files <= set(checked) and "prefect_sluicegate.demo" in checked, checked


def test_the_demo_entry_point_is_registered_and_loads() -> None:
    from prefect_sluicegate import demo

    eps = importlib.metadata.entry_points(group="sluicegate.demos", name="prefect")
    ours = [ep for ep in eps if ep.dist is not None and ep.dist.name == DIST]
    assert [ep.value for ep in ours] == ["prefect_sluicegate.demo"]
    assert ours[0].load() is demo
    assert callable(demo.run) and callable(demo.server_env)


def test_the_core_and_prefect_are_pinned_to_the_lines_tested_here() -> None:
    assert_pinned_to_the_lines_tested_here(DIST, ("sluicegate", "prefect"))
