"""Dagster test setup.

This folder only runs in the dagster environment (``python3 dev.py test --only dagster``);
elsewhere it is left out of collection, so a bare ``pytest`` in another environment does not
fail on a missing Dagster.
"""

from __future__ import annotations

import importlib.util

if importlib.util.find_spec("dagster") is None:
    collect_ignore_glob = ["test_*.py"]
