"""Fixtures of the server's tests: real ``sluicegate serve`` processes, stopped afterwards."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.core.support.paths import POLICY
from tests.core.support.serverproc import ServerProcess, StartServer


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator[StartServer]:
    """Start ``sluicegate serve`` processes: ``start_server(db_url, name="server",
    policy=POLICY, **options)`` (options as :class:`ServerProcess` takes them). All are stopped
    afterwards, pass or fail, and what they printed is shown with a failure."""
    started: list[ServerProcess] = []

    def start(
        db_url: str, name: str = "server", policy: Path = POLICY, **options: Any
    ) -> ServerProcess:
        server = ServerProcess(db_url, policy, tmp_path, name=name, **options)
        started.append(server)
        return server.start()

    yield start
    for server in started:
        server.stop()
        print(f"===== {server.name} ({server.url}) output =====\n{server.stderr()}")
