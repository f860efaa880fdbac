"""Fixtures of the lineage tests: a backend that answers as Marquez does, and one that is not
there."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from tests.core.support.lineage_backend import LineageBackend, running_backend


@pytest.fixture
def backend(request: pytest.FixtureRequest) -> Iterator[LineageBackend]:
    """A running lineage backend, answering 201 (or, parametrized indirectly, as its mode
    says: ``"fail"``, ``"refuse"``, ``"hang"``)."""
    with running_backend(getattr(request, "param", "ok")) as server:
        yield server


@pytest.fixture
def dead_url() -> str:
    """The URL of a port of 127.0.0.1 where nothing listens."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"
