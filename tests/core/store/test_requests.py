"""Listing requests (``store/requests.py``): keyset pages, their indexes, and the migration
that made them (revision 0006).

Every test runs on SQLite and on PostgreSQL (``db_url``) unless it says otherwise.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import inspect, text

import sluicegate.store.db as db
from sluicegate.model import ApprovalRequest, Asset, Decision, Status, Verdict
from sluicegate.store import Store, make_engine
from sluicegate.store.requests import page_ids

OTHER = Asset(namespace="s3://elsewhere", name="crm.public.customers")


def ids(reqs: list[ApprovalRequest]) -> list[str]:
    return [str(r.id) for r in reqs]


def walk(store: Store, size: int, **filters: Any) -> list[list[str]]:
    """Every page of a listing, following ``before`` from the last id of each page."""
    pages: list[list[str]] = []
    before = None
    while page := store.list_requests(limit=size, before=before, **filters):
        pages.append(ids(page))
        before = pages[-1][-1]
    return pages


FILTERS: list[dict[str, Any]] = [
    {},
    {"status": Status.PENDING},
    {"job": "crm_export.a"},
    {"job": "crm_export.a", "status": Status.PENDING},
    {"dataset": "crm.public.customers"},
    {"dataset": "crm.public.customers", "status": Status.PENDING},
    {"dataset": "postgres://prod:5432::crm.public.customers", "job": "crm_export.a"},
]


def test_every_listing_pages_through_all_its_requests_once_in_order(
    store: Store, open_request: Callable[..., ApprovalRequest]
) -> None:
    """Pages of 2 over 4 or 5 matches: full pages, a short last page or an empty one."""
    opened = [
        open_request(job=f"crm_export.{'ab'[k % 2]}", inputs=(OTHER,) if k % 3 == 0 else ())
        for k in range(9)
    ]
    for req in opened[::4]:
        store.transition(req.id, Status.CANCELLED)
    for filters in FILTERS:
        whole = ids(store.list_requests(limit=500, **filters))
        assert whole == sorted(whole, reverse=True), filters  # newest first
        pages = walk(store, 2, **filters)
        assert [i for p in pages for i in p] == whole, filters
        assert all(len(p) == 2 for p in pages[:-1]), filters


def test_a_page_counts_requests_not_their_decisions(
    store: Store, open_request: Callable[..., ApprovalRequest]
) -> None:
    """The page's limit holds for requests with several decisions, which come along whole."""
    older = open_request(approvals=3)
    newer = open_request(approvals=3)
    for reviewer in ("alice", "carol"):
        store.decide(
            newer.id,
            Decision(reviewer=reviewer, verdict=Verdict.APPROVE, fingerprint=newer.fingerprint),
        )
    (first,) = store.list_requests(limit=1)
    assert str(first.id) == str(newer.id)
    assert [d.reviewer for d in first.decisions] == ["alice", "carol"]
    (second,) = store.list_requests(limit=1, before=str(first.id))
    assert str(second.id) == str(older.id) and second.decisions == ()


@pytest.mark.parametrize("filters", FILTERS[1:], ids=lambda f: "+".join(f) or "none")
def test_sqlite_reads_a_page_from_an_index_in_id_order(
    sqlite_store: Store, filters: dict[str, Any]
) -> None:
    """No listing sorts its matches (``USE TEMP B-TREE``): each is a range read of an index."""
    stmt = page_ids(limit=50, before="01900000-0000-7000-8000-000000000000", **filters)
    with sqlite_store.read() as conn:
        sql = str(stmt.compile(conn, compile_kwargs={"literal_binds": True}))
        plan = " | ".join(r[-1] for r in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}"))
    assert "TEMP B-TREE" not in plan, plan
    assert "USING" in plan and "INDEX" in plan, plan
    assert "SCAN" not in plan, plan  # SEARCH: a range of the index, not all of it


def _alembic(url: str, revision: str) -> None:
    config = Config()
    config.set_main_option("script_location", str(Path(db.__file__).parent / "migrations"))
    engine = make_engine(url)
    try:
        with engine.connect() as conn, conn.begin():
            config.attributes["connection"] = conn
            command.upgrade(config, revision)
    finally:
        engine.dispose()


def test_revision_0006_adds_the_listing_indexes_to_a_0005_database(
    db_url: str, make_request: Callable[..., ApprovalRequest]
) -> None:
    _alembic(db_url, "0005")
    engine = make_engine(db_url)
    try:
        before = {i["name"] for i in inspect(engine).get_indexes("requests")}
    finally:
        engine.dispose()
    assert {"ix_requests_status", "ix_requests_job"} <= before
    assert "ix_requests_status_id" not in before

    with Store(db_url) as store:  # opening a store migrates to the head
        req = make_request()
        store.create_request(req)
        found = inspect(store.engine)
        listed = {i["name"]: i["column_names"] for i in found.get_indexes("requests")}
        by_name = {i["name"]: i["column_names"] for i in found.get_indexes("request_datasets")}
        with store.read() as conn:
            version = conn.execute(text("SELECT version_num FROM alembic_version")).scalar_one()
        assert ids(store.list_requests(status=Status.PENDING, dataset="crm.public.customers")) == [
            str(req.id)
        ]
    assert version == "0006"
    assert listed["ix_requests_status_id"] == ["status", "id"]
    assert listed["ix_requests_job_id"] == ["job", "id"]
    assert listed["ix_requests_job_status_id"] == ["job", "status", "id"]
    assert by_name["ix_request_datasets_name_request_id"] == ["name", "request_id"]
    assert not {"ix_requests_status", "ix_requests_job"} & set(listed)
    assert "ix_request_datasets_name" not in by_name
