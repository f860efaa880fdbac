"""A server whose database fails tells its callers "database unavailable", and nothing more.

``/readyz`` and the review pages answer anyone, signed in or not: on main their 503 named the
database URL (user, host, port, database name). The details go to the server's log, without
the password. The app runs on a PostgreSQL URL it cannot use: a closed port, or a database
that the live server refuses (no such user or database).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from sluicegate.server import create_app
from sluicegate.settings import load_settings
from sluicegate.store import Store
from tests.core.support.paths import POLICY

PASSWORD = "pw-s3cret-never-shown"
USER = "sg_leak_user"
DATABASE = "sg_leak_database"


def _closed_port() -> int:
    import socket

    with socket.socket() as s:  # bound, never listening: connecting is refused at once
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


pytestmark = pytest.mark.usefixtures("isolated")  # none of the developer's settings leaks in


@pytest.fixture(params=["closed-port", "refused-by-the-server"])
def down(request: pytest.FixtureRequest) -> Iterator[tuple[Any, list[str]]]:
    """``(app, what must not show)``: the app on a database it cannot use, lifespan running."""
    if request.param == "closed-port":
        port = _closed_port()
    else:
        if request.getfixturevalue("_pg_problem") is not None:
            pytest.skip("PostgreSQL not reachable on 127.0.0.1:5432")
        port = 5432
    url = f"postgresql+psycopg://{USER}:{PASSWORD}@127.0.0.1:{port}/{DATABASE}?connect_timeout=3"
    settings = load_settings(
        db_url=url,
        policy=str(POLICY),
        secret_key="test-key-" + "k" * 40,
    )
    # The database went away after the server started (here: it was never there).
    store = Store(url, auto_migrate=False)
    app = create_app(settings, store=store)
    with TestClient(app, raise_server_exceptions=False) as client:
        app.state.client = client
        yield app, [USER, DATABASE, str(port), "127.0.0.1", PASSWORD, "postgresql"]
    store.close()


def _shows_nothing(body: str, hidden: list[str]) -> None:
    for secret in hidden:
        assert secret not in body, f"{secret!r} leaked: {body[:300]}"


def test_readyz_says_database_unavailable_and_logs_where(
    down: tuple[Any, list[str]], caplog: pytest.LogCaptureFixture
) -> None:
    app, hidden = down
    with caplog.at_level(logging.WARNING, logger="sluicegate.server"):
        answer = app.state.client.get("/readyz")
    assert answer.status_code == 503
    assert answer.json() == {"error": "unavailable", "detail": "database unavailable"}
    _shows_nothing(answer.text, hidden)
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert f"127.0.0.1:{hidden[2]}/{DATABASE}" in logged  # the operator learns where
    assert PASSWORD not in logged


def test_the_review_page_says_database_unavailable_in_html(down: tuple[Any, list[str]]) -> None:
    app, hidden = down
    answer = app.state.client.get("/r/01a24d4a-001f-7106-9255-5b54a61bba56?t=anything")
    assert answer.status_code == 503
    assert answer.headers["content-type"].startswith("text/html")
    assert "cannot reach its database" in answer.text
    _shows_nothing(answer.text, hidden)


def test_the_api_says_database_unavailable(down: tuple[Any, list[str]]) -> None:
    app, hidden = down
    answer = app.state.client.get(
        "/api/v1/requests/01a24d4a-001f-7106-9255-5b54a61bba56",
        headers={"Authorization": "Bearer sg_anything"},
    )
    assert answer.status_code == 503
    assert answer.json() == {"error": "unavailable", "detail": "database unavailable"}
    _shows_nothing(answer.text, hidden)
