"""``/metrics`` of ``sluicegate serve --workers 2`` reports the whole server on every scrape.

The kernel hands each connection to one of the processes (SO_REUSEPORT), so a scrape is
answered by whichever process took it: each must report what all of them counted, parsed the
way Prometheus parses it.
"""

from __future__ import annotations

import os
import signal
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from sluicegate.store import Store
from tests.core.support.serverproc import PII_EXPORT, POLICY, ROUTINE_READ, ServerProcess, running

GATES = 40
#: Long polls spread over two processes: all sixteen on one happens 1 time in 32,768.
POLLS = 16
SCRAPES = 8

ALLOWED = "sluicegate_gates_opened_total{status=allowed}"
WAITING = "sluicegate_long_polls_waiting{}"


def fresh_connections(server: ServerProcess, token: str) -> httpx.Client:
    """A client that opens a new connection for every request and keeps none, so the kernel
    chooses a process for each (one client: making one costs 50 ms)."""
    return httpx.Client(
        base_url=server.url,
        headers={"Authorization": f"Bearer {token}"},
        limits=httpx.Limits(max_keepalive_connections=0),
        timeout=90,
    )


def scrapes(c: httpx.Client, name: str) -> list[float]:
    """``name`` (with its labels) as :data:`SCRAPES` scrapes report it, parsed by
    Prometheus' own text parser."""
    seen = []
    for _ in range(SCRAPES):
        r = c.get("/metrics")
        assert r.status_code == 200, r.text
        samples = {
            f"{s.name}{{{','.join(f'{k}={v}' for k, v in sorted(s.labels.items()))}}}": s.value
            for family in text_string_to_metric_families(r.text)
            for s in family.samples
        }
        seen.append(samples.get(name, 0.0))
    return seen


def until(c: httpx.Client, name: str, value: float, within: float = 10.0) -> list[float]:
    """Scrape until a whole round of scrapes reports ``value`` (or time runs out): the last
    round's figures. Long polls reach their process a moment after they are sent."""
    deadline = time.monotonic() + within
    seen = scrapes(c, name)
    while any(v != value for v in seen) and time.monotonic() < deadline:
        time.sleep(0.1)
        seen = scrapes(c, name)
    return seen


def worker_pids(server: ServerProcess) -> list[int]:
    """The serving processes under ``serve`` (not multiprocessing's resource tracker)."""
    assert server.proc is not None
    parent = server.proc.pid
    children = Path(f"/proc/{parent}/task/{parent}/children").read_text().split()
    return [
        int(pid) for pid in children if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes()
    ]


class LongPoll(threading.Thread):
    """A client waiting on a request, on a connection of its own."""

    def __init__(self, c: httpx.Client, request_id: str) -> None:
        super().__init__(daemon=True)
        self.c = c
        self.path = f"/api/v1/requests/{request_id}/wait"
        self.status: str | None = None
        self.cut = False

    def run(self) -> None:
        try:
            self.status = self.c.get(self.path, params={"timeout": 60}).json()["status"]
        except httpx.TransportError:
            self.cut = True  # its process was killed


@pytest.fixture
def two_workers(tmp_path: Path) -> Iterator[tuple[ServerProcess, str]]:
    db = f"sqlite:///{tmp_path}/sluicegate.db"
    with Store(db) as store:
        token = store.create_token("airflow-prod", "request")
    # The server's temporary files go here, where the test can see them.
    (tmp_path / "tmp").mkdir()
    env = {"TMPDIR": str(tmp_path / "tmp")}
    srv = ServerProcess(db, POLICY, tmp_path, name="workers", workers=2, env=env)
    with running(srv):
        srv.start()
        yield srv, token


def metrics_dirs(server: ServerProcess) -> list[Path]:
    return sorted((server.workdir / "tmp").glob("sluicegate-metrics-*"))


def test_every_scrape_of_two_workers_reports_the_whole_server(
    two_workers: tuple[ServerProcess, str],
) -> None:
    srv, token = two_workers
    c = fresh_connections(srv, token)
    for i in range(GATES):
        r = c.post("/api/v1/requests", json={"idempotency_key": f"r{i}", "action": ROUTINE_READ})
        assert r.status_code == 200 and r.json()["status"] == "allowed", r.text
    assert scrapes(c, ALLOWED) == [GATES] * SCRAPES
    # They count into one private directory (no other user may read or write it).
    [shared] = metrics_dirs(srv)
    assert shared.stat().st_mode & 0o777 == 0o700

    body = {"idempotency_key": f"pii-{uuid.uuid4()}", "action": PII_EXPORT}
    r = c.post("/api/v1/requests", json=body)
    assert r.status_code == 201, r.text
    request_id = r.json()["id"]
    polls = [LongPoll(c, request_id) for _ in range(POLLS)]
    for p in polls:
        p.start()
    assert until(c, WAITING, POLLS) == [POLLS] * SCRAPES

    # A worker that dies takes its long polls with it, but not what it counted; the one
    # started in its place adds to the same totals.
    victim = worker_pids(srv)[0]
    os.kill(victim, signal.SIGKILL)
    deadline = time.monotonic() + 20
    while (pids := worker_pids(srv)) == [] or victim in pids or len(pids) < 2:
        if time.monotonic() > deadline:
            pytest.fail(f"no worker replaced {victim}:\n{srv.stderr()}")
        time.sleep(0.1)
    left = sum(1 for p in polls if not p.cut)  # the cut ones noticed at once (1 s ago)
    assert 0 < left < POLLS, "the kernel gave every long poll to one process"
    assert until(c, WAITING, left) == [left] * SCRAPES
    assert scrapes(c, ALLOWED) == [GATES] * SCRAPES
    assert scrapes(c, "sluicegate_gates_opened_total{status=pending}") == [1] * SCRAPES
    assert scrapes(c, "sluicegate_pending_requests{}") == [1] * SCRAPES

    r = c.post(f"/api/v1/requests/{request_id}/cancel", json={"reason": "done"})
    assert r.status_code == 200, r.text
    for p in polls:
        p.join(timeout=10)
    assert [p.status for p in polls if not p.cut] == ["cancelled"] * left
    assert until(c, WAITING, 0) == [0] * SCRAPES
    assert scrapes(c, "sluicegate_requests_ended_total{status=cancelled}") == [1] * SCRAPES
    c.close()

    srv.stop()  # SIGTERM: the two_workers removes its directory on the way out
    assert metrics_dirs(srv) == []
