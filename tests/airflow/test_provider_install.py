"""The Airflow provider is installed, importable and discovered by Airflow."""

from __future__ import annotations

import ast
import importlib.metadata
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.adapter_checks import (
    assert_imports_no_other_adapter,
    assert_pinned_to_the_lines_tested_here,
)

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


def test_no_module_imports_another_adapter_orchestrator_or_the_server() -> None:
    import sluicegate_airflow

    checked = assert_imports_no_other_adapter("sluicegate_airflow")
    # every module of the provider was imported and checked, not only its __init__: each file
    # of the package, in Airflow's own providers' folders
    folder = Path(sluicegate_airflow.__file__).parent
    modules = {
        ".".join(
            ("sluicegate_airflow", *path.relative_to(folder).with_suffix("").parts)
        ).removesuffix(".__init__")
        for path in folder.rglob("*.py")
    }
    assert (
        {
            "sluicegate_airflow.hooks.sluicegate",
            "sluicegate_airflow.operators.approval",
            "sluicegate_airflow.sensors.approval",
            "sluicegate_airflow.triggers.approval",
            "sluicegate_airflow.decorators.sluicegate",
            "sluicegate_airflow.utils.datasets",
            "sluicegate_airflow.demo",
        }
        <= modules
        <= set(checked)
    ), sorted(modules - set(checked))


#: What a DAG file imports from the provider, and Airflow's registry on ``@task.sluicegate``.
_DAG_FILE_IMPORTS = """
import json, sys
from airflow.sdk import dag, task
import sluicegate_airflow.operators, sluicegate_airflow.decorators, sluicegate_airflow.sensors
import sluicegate_airflow.hooks
print(json.dumps(sorted(m for m in sys.modules if m.partition(".")[0] == "sluicegate")))
"""


def test_a_dag_file_that_uses_the_provider_does_not_import_the_core() -> None:
    # Every task process parses its DAG file: the gate's machinery (the core, its pydantic
    # models, its client) is imported when a gate asks, in execute, not for every task.
    out = subprocess.run(
        [sys.executable, "-c", _DAG_FILE_IMPORTS], capture_output=True, text=True, check=False
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert json.loads(out.stdout.splitlines()[-1]) == []


def test_the_demo_is_registered_for_sluicegate_demo_with_airflow() -> None:
    (entry,) = importlib.metadata.entry_points(group="sluicegate.demos", name="airflow")
    assert entry.dist is not None and entry.dist.name == DIST
    demo = entry.load()
    assert demo.__name__ == "sluicegate_airflow.demo"
    assert callable(demo.missing) and callable(demo.run)
    assert demo.missing() is None  # Airflow and its command are installed here


def test_each_package_exports_its_names_and_provider_info_names_real_modules() -> None:
    import importlib

    from sluicegate_airflow import get_provider_info

    for package, names in {
        "hooks": {"SluicegateHook"},
        "operators": {"ApprovalGateOperator", "idempotency_key"},
        "sensors": {"ApprovalSensor"},
        "triggers": {"ApprovalTrigger"},
        "decorators": {"sluicegate_task"},
    }.items():
        module = importlib.import_module(f"sluicegate_airflow.{package}")
        assert set(module.__all__) == names, package
        assert all(getattr(module, name) is not None for name in names), package
    info = get_provider_info()
    for kind in ("operators", "sensors", "hooks", "triggers"):
        for entry in info[kind]:
            for module in entry["python-modules"]:
                importlib.import_module(module)
    for dotted in (
        info["task-decorators"][0]["class-name"],
        info["connection-types"][0]["hook-class-name"],
    ):
        module, _, name = dotted.rpartition(".")
        assert getattr(importlib.import_module(module), name) is not None, dotted


def _private_airflow_names(tree: ast.Module, ours: set[str]) -> list[str]:
    """The private names of Airflow's that ``tree`` uses: a ``_name`` imported from an
    ``airflow`` module, or a ``_name`` attribute (``x._name``, ``getattr(x, "_name")``) that
    the provider itself does not define."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("airflow"):
            found += [f"{node.module}.{a.name}" for a in node.names if a.name.startswith("_")]
            found += [node.module] if "._" in f".{node.module}" else []
        elif isinstance(node, ast.Import):
            found += [a.name for a in node.names if "._" in f".{a.name}"]
        elif isinstance(node, ast.Attribute) and _private(node.attr, ours):
            found.append(f"line {node.lineno}: .{node.attr}")
        elif (  # getattr(ti, "_name", None) and the like
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in ("getattr", "hasattr", "setattr", "delattr")
            and len(node.args) > 1
            and isinstance(node.args[1], ast.Constant)
            and isinstance(node.args[1].value, str)
            and _private(node.args[1].value, ours)
        ):
            found.append(f"line {node.lineno}: {node.func.id}(..., {node.args[1].value!r})")
    return found


def _private(name: str, ours: set[str]) -> bool:
    return name.startswith("_") and not name.startswith("__") and name not in ours


def test_the_provider_uses_no_private_airflow_internals() -> None:
    # Airflow may change a private name in any release; the provider uses only its public API.
    import sluicegate_airflow

    sources = {
        path: ast.parse(path.read_text())
        for path in Path(sluicegate_airflow.__file__).parent.rglob("*.py")
    }
    ours: set[str] = set()  # the provider's own private names: functions, classes, attributes
    for tree in sources.values():
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                ours.add(node.name)
            elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
                ours.add(node.attr)
    used = {str(path): _private_airflow_names(tree, ours) for path, tree in sources.items()}
    assert not {path: names for path, names in used.items() if names}


def test_the_core_and_airflow_are_pinned_to_the_lines_tested_here() -> None:
    assert_pinned_to_the_lines_tested_here(DIST, ("sluicegate", "apache-airflow"))
