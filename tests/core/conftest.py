"""Store and audit fixtures: a database URL on SQLite or PostgreSQL, a Store, requests.

``db_url`` runs a test once on SQLite (a file in ``tmp_path``, WAL) and once on PostgreSQL (a
fresh schema in the database ``test`` on 127.0.0.1:5432, dropped afterwards). Where no
PostgreSQL answers, the PostgreSQL half is skipped with a reason that says so.
"""

from __future__ import annotations

import secrets
import warnings
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from sluicegate.model import Action, ApprovalRequest, Asset, Requester
from sluicegate.store import Store, request_event
from sluicegate.store.schema import audit_events

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


@pytest.fixture
def pg_url(_pg_problem: str | None) -> Iterator[str]:
    """A URL whose search_path is a brand-new schema, dropped (cascade) after the test."""
    if _pg_problem is not None:
        pytest.skip(f"PostgreSQL not reachable on 127.0.0.1:5432: {_pg_problem}")
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
