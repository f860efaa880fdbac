"""Collection order and node ids for every suite, as pytest-xdist needs them (see dev.py).

dev.py runs each suite with ``-n N --dist loadfile --no-loadscope-reorder``: pytest-xdist hands
whole files to its workers, in the order collected here. A file whose tests take long (a
fresh virtual environment, a clone, a demo with a real orchestrator) handed out last would end
the run alone, so those come first, then the files with the most tests.

Only pytest and the standard library here: this file is loaded in every suite's environment.
"""

from __future__ import annotations

from collections import Counter

import pytest

#: Files whose tests run for tens of seconds each (they start real processes that install,
#: clone, or run an orchestrator): handed out first.
LONGEST_FIRST = (
    "test_install_lines.py",
    "test_demo_with.py",
    "test_fresh_clone.py",
    "test_server_process.py",
    "test_demo.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    _unique_node_ids(items)
    sizes = Counter(item.path for item in items)

    def rank(item: pytest.Item) -> tuple[int, int]:
        name = item.path.name
        first = LONGEST_FIRST.index(name) if name in LONGEST_FIRST else len(LONGEST_FIRST)
        return first, -sizes[item.path]

    items.sort(key=rank)  # stable: each file's tests stay together, in their own order


def _unique_node_ids(items: list[pytest.Item]) -> None:
    """Give every test its own node id. schemathesis 4.32 names the item of each API operation
    ``test_x[GET /path]``, but pytest 9.2 derives a node id from the function's name alone, so
    they all share one; pytest-xdist keys its work by node id and would run one of them only
    (the count check in tests/core/test_server_schema.py catches that)."""
    shared = Counter(item.nodeid for item in items)
    for item in items:
        if shared[item.nodeid] > 1 and item.parent is not None and hasattr(item, "_id"):
            item._id = item.parent.id.child(item.name)
