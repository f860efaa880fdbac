"""Collection order and node ids for every suite, as pytest-xdist needs them (see dev.py).

dev.py runs each suite with ``-n N --dist loadfile --no-loadscope-reorder``: pytest-xdist hands
whole files to its workers, in the order collected here. A file whose tests take long (a
fresh virtual environment, a clone, a demo with a real orchestrator) handed out last would end
the run alone, so those come first, then the files with the most tests.

Only pytest and the standard library here: this file is loaded in every suite's environment.
"""

from __future__ import annotations

from collections import Counter
from fnmatch import fnmatch
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent

#: Files whose tests run for tens of seconds each (they start real processes that install,
#: clone, or run an orchestrator): handed out first. Paths under tests/, ``*`` for any suite.
LONGEST_FIRST = (
    "core/test_install_lines.py",
    "*/test_demo_with.py",
    "core/test_fresh_clone.py",
    "core/server/test_run.py",
    "core/server/test_replicas.py",
    "core/server/test_stop_and_workers.py",
    "core/test_demo.py",
    # Few tests each, but each starts servers or CLIs (measured per file, CPU seconds).
    "core/server/test_keys.py",
    "core/server/test_metrics.py",
    "core/lineage/test_approval_runs.py",
    "core/lineage/test_readback.py",
    "core/cli/test_demo.py",
    "core/server/pages/test_sessions.py",
    "core/notify/test_delivery_once.py",
    "core/test_gate.py",
    # The adapters' files whose tests run their orchestrator for real, heaviest first.
    "airflow/operators/test_approval.py",
    "airflow/decorators/test_sluicegate.py",
    "airflow/sensors/test_approval.py",
    "dagster/test_decorators.py",
    "dagster/test_sensor.py",
    "dagster/test_resource.py",
    "prefect/test_gate.py",
    "prefect/test_pause.py",
    "prefect/test_blocks.py",
    "prefect/test_decision.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    _unique_node_ids(items)
    sizes = Counter(item.path for item in items)
    order: dict[Path, int] = {}

    def first(path: Path) -> int:
        if path not in order:
            try:
                where = path.resolve().relative_to(HERE).as_posix()
            except ValueError:  # not under tests/
                where = ""
            found = [i for i, pattern in enumerate(LONGEST_FIRST) if fnmatch(where, pattern)]
            order[path] = found[0] if found else len(LONGEST_FIRST)
        return order[path]

    def rank(item: pytest.Item) -> tuple[int, int]:
        return first(item.path), -sizes[item.path]

    items.sort(key=rank)  # stable: each file's tests stay together, in their own order


def _unique_node_ids(items: list[pytest.Item]) -> None:
    """Give every test its own node id. schemathesis 4.32 names the item of each API operation
    ``test_x[GET /path]``, but pytest 9.2 derives a node id from the function's name alone, so
    they all share one; pytest-xdist keys its work by node id and would run one of them only
    (the count check in tests/core/server/test_openapi.py catches that)."""
    shared = Counter(item.nodeid for item in items)
    for item in items:
        if shared[item.nodeid] > 1 and item.parent is not None and hasattr(item, "_id"):
            item._id = item.parent.id.child(item.name)
