"""Prefect test setup: a throwaway PREFECT_HOME, set before anything imports Prefect.

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

_home = tempfile.mkdtemp(prefix="sluicegate-prefect-home-")
atexit.register(shutil.rmtree, _home, ignore_errors=True)
os.environ["PREFECT_HOME"] = _home

if importlib.util.find_spec("prefect") is None:
    collect_ignore_glob = ["test_*.py"]
