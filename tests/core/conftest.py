"""The fixtures of several folders of tests/core: databases, a Store and requests, a clean
environment, the API in process, the chat fake.

``db_url`` runs a test once on SQLite (a file in ``tmp_path``, WAL) and once on PostgreSQL (a
fresh schema in the database ``test`` on 127.0.0.1:5432, dropped afterwards). Where no
PostgreSQL answers, the PostgreSQL half is skipped with a reason that says so.

A fixture used by one folder only is in that folder's conftest.py; the code these fixtures
are built from (servers, fakes, the API harness) is in :mod:`tests.core.support`.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import sys
import threading
import traceback
import warnings
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from sluicegate.model import Action, ApprovalRequest, Asset, Requester
from sluicegate.server import create_app
from sluicegate.settings import load_settings
from sluicegate.store import Store, request_event
from sluicegate.store.schema import audit_events
from tests.core.support.api import Harness
from tests.core.support.fakechat import FakeChat
from tests.core.support.paths import POLICY

PG_DSN = "host=127.0.0.1 port=5432 user=postgres dbname=test connect_timeout=3"
PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test?options=-csearch_path%3D{schema}"

CUSTOMERS = Asset(
    namespace="postgres://prod:5432", name="crm.public.customers", classifications=("pii",)
)
BUCKET = Asset(namespace="s3://partner-share", name="exports/customers.csv")


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/sluicegate.db"


@pytest.fixture(scope="session")
def _pg_problem() -> str | None:
    """None when PostgreSQL answers on 127.0.0.1:5432, else why not (checked once a session)."""
    try:
        import psycopg

        with psycopg.connect(PG_DSN) as conn:
            conn.execute("SELECT 1")
    except Exception as err:  # any failure means: skip, saying why
        return str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return None


@contextlib.contextmanager
def _fresh_schema(problem: str | None) -> Iterator[str]:
    """A URL whose search_path is a brand-new schema, dropped (cascade) afterwards; a skip
    saying why when PostgreSQL does not answer."""
    if problem is not None:
        pytest.skip(f"PostgreSQL not reachable on 127.0.0.1:5432: {problem}")
    import psycopg

    schema = f"sg_{secrets.token_hex(6)}"
    with psycopg.connect(PG_DSN, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    try:
        yield PG_URL.format(schema=schema)
    finally:
        try:
            with psycopg.connect(PG_DSN, autocommit=True) as conn:
                conn.execute("SET lock_timeout = '20s'")
                conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
        except Exception as err:  # pragma: no cover - only when something leaked a lock
            warnings.warn(f"could not drop schema {schema}: {err}", stacklevel=1)


@pytest.fixture
def pg_url(_pg_problem: str | None) -> Iterator[str]:
    """A URL whose search_path is a brand-new schema, dropped (cascade) after the test."""
    with _fresh_schema(_pg_problem) as url:
        yield url


@pytest.fixture(scope="module")
def module_pg_url(_pg_problem: str | None) -> Iterator[str]:
    """:func:`pg_url` for a module's tests together (servers they share: each test keeps to
    requests of its own), dropped after the module."""
    with _fresh_schema(_pg_problem) as url:
        yield url


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest) -> str:
    """The same test on SQLite and on PostgreSQL."""
    return str(request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "pg_url"))


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    s = Store(db_url)
    try:
        yield s
    finally:
        s.close()


@pytest.fixture
def sqlite_store(sqlite_url: str) -> Iterator[Store]:
    """A :class:`Store` on SQLite only (for what does not depend on the database)."""
    s = Store(sqlite_url)
    try:
        yield s
    finally:
        s.close()


def export_action(*inputs: Asset) -> Action:
    return Action(
        kind="export",
        summary="Export customers to the partner bucket",
        inputs=inputs or (CUSTOMERS,),
        outputs=(BUCKET,),
        context={"rows": 120_000},
    )


@pytest.fixture
def make_request() -> Callable[..., ApprovalRequest]:
    """A pending request (not stored): export of crm.public.customers by a job with an owner."""

    def make(
        *,
        key: str | None = None,
        approvals: int = 1,
        denials: int = 1,
        comment_on_deny: bool = False,
        timeout: timedelta | None = None,
        job: str = "crm_export.export_customers",
        inputs: tuple[Asset, ...] = (),
        now: datetime | None = None,
    ) -> ApprovalRequest:
        return ApprovalRequest.open(
            idempotency_key=key or f"airflow:{job}:run-{secrets.token_hex(4)}:export",
            action=export_action(*inputs),
            requester=Requester(
                orchestrator="airflow",
                job=job,
                run_id="manual__1",
                owner="dave",
                principal="airflow-prod",
            ),
            rule="pii-export",
            required_approvals=approvals,
            required_denials=denials,
            groups=("data-stewards",),
            comment_on_deny=comment_on_deny,
            timeout=timeout,
            now=now,
        )

    return make


@pytest.fixture
def open_request(
    store: Store, make_request: Callable[..., ApprovalRequest]
) -> Callable[..., ApprovalRequest]:
    """Make a request and store it with its ``request.created`` audit row."""

    def open_(**kwargs: Any) -> ApprovalRequest:
        req = make_request(**kwargs)
        stored, created = store.create_request(
            req, events=[request_event(req, "request.created", actor="airflow-prod")]
        )
        assert created
        return stored

    return open_


@pytest.fixture
def audit_rows(store: Store) -> Callable[..., list[Any]]:
    """The audit rows (of one request, if given), in seq order."""

    def rows(request_id: object = None) -> list[Any]:
        stmt = select(audit_events).order_by(audit_events.c.seq)
        if request_id is not None:
            stmt = stmt.where(audit_events.c.request_id == str(request_id))
        with store.read() as conn:
            return list(conn.execute(stmt).all())

    return rows


# ----------------------------------------------------------------------------- environment


@pytest.fixture
def isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No SLUICEGATE_* or OPENLINEAGE* variable and no ./sluicegate.yaml or ./openlineage.yml
    of the developer's leaks in: the test runs in its own ``tmp_path``. A module that wants it
    for every test says ``pytestmark = pytest.mark.usefixtures("isolated")``."""
    for name in list(os.environ):
        if name.startswith(("SLUICEGATE_", "OPENLINEAGE")):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def app(sqlite_url: str) -> Iterator[Any]:
    """The server's app on a fresh SQLite file with the tests' example policy (in process:
    serve it with ``ThreadServer`` where a real client must reach it). A module that needs
    another app defines its own ``app``."""
    application = create_app(load_settings(db_url=sqlite_url, policy=str(POLICY)))
    yield application
    application.state.sluicegate.store.close()


# ----------------------------------------------------------------------------- the API in process


@pytest.fixture
def make_api(tmp_path: Path) -> Iterator[Callable[..., Harness]]:
    """Build harnesses (:class:`~tests.core.support.api.Harness`): ``make_api(db_url,
    policy=POLICY, **settings)``; every app's client and store are closed at the end."""
    stack: list[tuple[TestClient, Any]] = []

    def make(db_url: str, policy: Path = POLICY, **settings: Any) -> Harness:
        if not db_url.startswith("sqlite"):  # PostgreSQL needs a key, shared by its replicas
            settings.setdefault("secret_key", "test-key-" + "k" * 40)
        app = create_app(load_settings(db_url=db_url, policy=str(policy), **settings))
        client = TestClient(app, raise_server_exceptions=False)  # a 500 is an answer to assert
        client.__enter__()
        stack.append((client, app))
        return Harness(app, client)

    yield make
    hung = []
    for client, app in reversed(stack):
        # Bounded: a server whose shutdown hangs fails the test instead of the whole run.
        closer = threading.Thread(target=client.__exit__, args=(None, None, None), daemon=True)
        closer.start()
        closer.join(timeout=15)
        if closer.is_alive():
            hung.append(f"{app.state.sluicegate.store.url}\n{_every_threads_stack()}")
        app.state.sluicegate.store.close()
    if hung:
        pytest.fail(f"the app's shutdown (lifespan) did not finish within 15 s: {hung}")


def _every_threads_stack() -> str:
    """Where each thread of this process is, for a shutdown that hangs (seen once under a
    loaded xdist run on PostgreSQL, never alone): the failure then says which step waits."""
    names = {t.ident: t.name for t in threading.enumerate()}
    return "\n".join(
        f"--- thread {names.get(ident, ident)}\n" + "".join(traceback.format_stack(frame))
        for ident, frame in sys._current_frames().items()
    )


@pytest.fixture
def api(db_url: str, make_api: Callable[..., Harness]) -> Harness:
    """The example policy's API on SQLite and on PostgreSQL."""
    return make_api(db_url)


@pytest.fixture
def api1(sqlite_url: str, make_api: Callable[..., Harness]) -> Harness:
    """The example policy's API on SQLite only (for what does not depend on the database)."""
    return make_api(sqlite_url)


# ----------------------------------------------------------------------------- chat


@pytest.fixture
def chat() -> Iterator[FakeChat]:
    """Slack's Web API and incoming webhook, Teams' Workflows webhook and a generic receiver,
    as one local server (:class:`~tests.core.support.fakechat.FakeChat`) that records what
    it gets."""
    with FakeChat() as fake:
        yield fake


@pytest.fixture
def chat_api(db_url: str, make_api: Callable[..., Harness], chat: FakeChat) -> Harness:
    """The example policy's API on SQLite and on PostgreSQL, its Slack bot, Teams and generic
    webhook channels posting to ``chat``."""
    return make_api(db_url, **chat.server_settings())


@pytest.fixture
def chat_api1(sqlite_url: str, make_api: Callable[..., Harness], chat: FakeChat) -> Harness:
    """:func:`chat_api` on SQLite only."""
    return make_api(sqlite_url, **chat.server_settings())
