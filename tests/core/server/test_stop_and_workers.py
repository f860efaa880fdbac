"""Stopping ``sluicegate serve`` (SIGTERM, as systemd, Docker and Ctrl-C send it) with
PostgreSQL's LISTEN connection and long polls open, and ``serve --workers 2``: one server on
one port whose processes wake each other's long polls.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.core.support.served import (
    LongPoll,
    open_gate,
    sigterm,
    tokens_for,
    waiting_polls,
)
from tests.core.support.serverproc import (
    StartServer,
)


@pytest.mark.postgres
def test_a_server_on_postgresql_stops_promptly_when_asked(
    pg_url: str, tmp_path: Path, start_server: StartServer
) -> None:
    """SIGTERM (what systemd, Docker and Ctrl-C send) ends it, LISTEN connection and all."""
    server = start_server(pg_url, name="stopping")
    pipeline, _ = tokens_for(pg_url)
    open_gate(server, pipeline)
    assert sigterm(server, within=10) in (0, -15)


def test_an_open_long_poll_does_not_hold_up_a_stop(
    sqlite_url: str, tmp_path: Path, start_server: StartServer
) -> None:
    server = start_server(sqlite_url, name="stopping")
    pipeline, _ = tokens_for(sqlite_url)
    rid = open_gate(server, pipeline)["id"]
    poll = LongPoll(server, pipeline, rid, timeout=4)
    poll.start()
    deadline = time.monotonic() + 10
    while waiting_polls(server) < 1:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    try:
        sigterm(server, within=2)
    finally:
        poll.join(timeout=10)


def test_serve_with_workers_is_one_server_on_one_port(
    db_url: str, tmp_path: Path, start_server: StartServer
) -> None:
    """``serve --workers 2``: two processes, one port; a decision taken through one process
    wakes the long polls held by the other at once, and a stop ends them all."""
    pipeline, tokens = tokens_for(db_url, "alice", "bob")
    server = start_server(db_url, name="workers", workers=2)
    req = open_gate(server, pipeline)
    # Each poll is its own connection; the kernel spreads connections over the two processes
    # (SO_REUSEPORT), so with eight of them both processes hold some (all but 1 in 128).
    polls = [LongPoll(server, pipeline, req["id"]) for _ in range(8)]
    for p in polls:
        p.start()
    # Every poll waits in its process before the decision (the whole server's gauge, which
    # every process reports): one that missed the decision would hold its polls until the
    # 5 s safety sweep.
    deadline = time.monotonic() + 10
    while waiting_polls(server) < len(polls):
        assert time.monotonic() < deadline, "the long polls never all started waiting"
        time.sleep(0.02)
    for reviewer in ("alice", "bob"):
        with server.client(tokens[reviewer]) as c:
            r = c.post(f"/api/v1/requests/{req['id']}/decisions", json={"verdict": "approve"})
        assert r.status_code == 200, r.text
    decided_at = time.monotonic()
    assert r.json()["status"] == "approved"
    for p in polls:
        p.join(timeout=25)
        assert p.status == "approved", p.status
        assert p.at is not None and p.at - decided_at < 1.0, p.at - decided_at
    proc = server.proc
    assert proc is not None
    started = time.monotonic()
    proc.terminate()
    assert proc.wait(timeout=15) == 0
    assert time.monotonic() - started < 10
    assert "Traceback" not in server.stderr(), server.stderr()
