"""Prefect test setup: a throwaway PREFECT_HOME, set before anything imports Prefect, and the
temporary Prefect API server the flows run against (``prefect_api``).

This folder only runs in the prefect environment (``python3 dev.py test --only prefect``);
elsewhere it is left out of collection, so a bare ``pytest`` in another environment does not
fail on a missing Prefect.
"""

from __future__ import annotations

import atexit
import importlib.util
import os
import shutil
import tempfile
from collections.abc import Iterator

import pytest

_home = tempfile.mkdtemp(prefix="sluicegate-prefect-home-")
atexit.register(shutil.rmtree, _home, ignore_errors=True)
os.environ["PREFECT_HOME"] = _home

if importlib.util.find_spec("prefect") is None:
    collect_ignore_glob = ["test_*.py"]


@pytest.fixture(scope="session")
def prefect_api() -> Iterator[str]:
    """``prefect_test_harness``: a temporary Prefect API server (its own SQLite database),
    started once per test process and shared by the test modules: each test names its own
    flow runs and blocks, and starting one costs some 20 s of a Prefect server's imports and
    migrations."""
    from prefect.settings import PREFECT_API_URL
    from prefect.testing.utilities import prefect_test_harness

    # Its start takes 20 s on an idle machine, a minute or more beside the other suites.
    with prefect_test_harness(server_startup_timeout=300):
        url = PREFECT_API_URL.value()
        assert url, "the harness set no API URL"
        yield str(url)
