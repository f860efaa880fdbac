"""The public API: what each module declares in ``__all__`` exists and is documented."""

from __future__ import annotations

import importlib
import inspect

import pytest

MODULES = [
    "sluicegate",
    "sluicegate.audit",
    "sluicegate.calls",
    "sluicegate.cli",
    "sluicegate.client",
    "sluicegate.datasets",
    "sluicegate.demo",
    "sluicegate.exceptions",
    "sluicegate.gate",
    "sluicegate.gate.drivers",
    "sluicegate.gate.machine",
    "sluicegate.gate.outcome",
    "sluicegate.idempotency",
    "sluicegate.identity",
    "sluicegate.lineage.emitter",
    "sluicegate.lineage.events",
    "sluicegate.lineage.facet",
    "sluicegate.lineage.approval_runs",
    "sluicegate.lineage.graph",
    "sluicegate.lineage.index",
    "sluicegate.lineage.ingest",
    "sluicegate.lineage.readback",
    "sluicegate.model",
    "sluicegate.model.action",
    "sluicegate.model.base",
    "sluicegate.model.request",
    "sluicegate.model.requester",
    "sluicegate.policy",
    "sluicegate.settings",
    "sluicegate.store",
    "sluicegate.wire",
    "sluicegate.workflow",
]


@pytest.mark.parametrize("name", MODULES)
def test_all_is_declared_resolvable_and_documented(name: str) -> None:
    module = importlib.import_module(name)
    assert module.__doc__, f"{name} has no module docstring"
    exported = module.__all__
    assert sorted(exported) == sorted(set(exported)), f"{name}.__all__ repeats a name"
    for attr in exported:
        obj = getattr(module, attr)  # AttributeError: declared but missing
        if inspect.isclass(obj) or inspect.isfunction(obj):
            assert inspect.getdoc(obj), f"{name}.{attr} has no docstring"


@pytest.mark.parametrize("name", MODULES)
def test_public_functions_and_classes_are_in_all(name: str) -> None:
    module = importlib.import_module(name)
    public = {
        attr
        for attr, obj in vars(module).items()
        if not attr.startswith("_")
        and (inspect.isclass(obj) or inspect.isfunction(obj))
        and getattr(obj, "__module__", None) == module.__name__
    }
    assert public <= set(module.__all__), (
        f"{name} does not export {sorted(public - set(module.__all__))}"
    )


def test_core_imports_no_orchestrator() -> None:
    import sys

    for name in MODULES:
        importlib.import_module(name)
    assert not {"airflow", "dagster", "prefect"} & set(sys.modules)


def test_package_ships_type_information() -> None:
    from pathlib import Path

    import sluicegate

    assert Path(inspect.getfile(sluicegate)).with_name("py.typed").is_file()
