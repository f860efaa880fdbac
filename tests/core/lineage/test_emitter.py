"""The gates' event sender against backends that fail: dead, flapping, one of two.

Real HTTP throughout: openlineage-python's own client and HTTP transport (no retries of its
own, so that a failure is quick and what is measured is the emitter's backoff) against a closed
port, or a local backend that answers as Marquez does and can be switched to failing (500) and
back. What a user would see: how many sends a dead backend costs, which events survive a full
queue, what is counted, and that a backend that is down costs the others nothing.
"""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any

import pytest
from openlineage.client import OpenLineageClient
from openlineage.client.event_v2 import Job, Run, RunEvent, RunState
from openlineage.client.transport.composite import CompositeConfig, CompositeTransport
from openlineage.client.transport.http import HttpConfig, HttpTransport

from sluicegate.lineage.emitter import BACKOFF_INITIAL, LineageEmitter
from tests.core.support.lineage_backend import LineageBackend, running_backend

HTTP = {"type": "http", "retry": {"total": 0, "connect": 0, "read": 0}, "timeout": 0.5}


#: No OPENLINEAGE* variable or ./openlineage.yml of the developer's.
pytestmark = pytest.mark.usefixtures("isolated")


def _client(url: str) -> OpenLineageClient:
    config = HttpConfig.from_dict({**HTTP, "url": url})
    return OpenLineageClient(transport=HttpTransport(config))


def _event(n: int) -> RunEvent:
    """Event ``n``: its run id ends in ``n``, so the backend's log says which arrived."""
    return RunEvent(
        eventType=RunState.START,
        eventTime="2026-12-01T10:00:00.000Z",
        run=Run(runId=f"{uuid.uuid4()!s:.24}{n:012d}"),
        job=Job(namespace="sluicegate", name="export.approval_gate"),
        producer="https://github.com/sluicegate/sluicegate",
    )


def _numbers(backend: LineageBackend) -> list[int]:
    return [int(body["run"]["runId"][-12:]) for _, _, body in backend.received]


def _wait(condition: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert condition()


def test_a_dead_backend_is_probed_once_per_backoff_not_per_event(dead_url: str) -> None:
    emitter = LineageEmitter(_client(dead_url))
    started = time.monotonic()
    for n in range(50):
        emitter.emit(_event(n))
    assert time.monotonic() - started < 0.5  # queueing only: the caller never waits
    time.sleep(BACKOFF_INITIAL * 1.5)
    # One attempt at once, the next after the first rest: not 50 connection attempts.
    assert emitter.counts["failed"] == 2, emitter.counts
    assert emitter.counts["sent"] == 0
    assert emitter.queued == {"http": 48}  # the others wait for the backend, in its queue
    assert not emitter.close(0.2)
    assert emitter.counts == {"sent": 0, "failed": 2, "dropped": 48}


def test_a_full_queue_keeps_the_newest_events(backend: LineageBackend) -> None:
    backend.mode = "fail"  # 500 for the first event: the backend rests
    outcomes: list[str] = []
    emitter = LineageEmitter(_client(backend.url), max_queue=5, on_result=outcomes.append)
    emitter.emit(_event(0))
    _wait(lambda: emitter.counts["failed"] == 1)
    backend.mode = "ok"  # back, but the emitter waits out its rest before it tries again
    for n in range(1, 20):
        emitter.emit(_event(n))
    assert emitter.queued == {"http": 5}
    assert emitter.counts == {"sent": 0, "failed": 1, "dropped": 14}
    assert emitter.flush(BACKOFF_INITIAL + 5)
    # What reached the backend: the failed first, then the five newest, in order.
    assert _numbers(backend) == [0, 15, 16, 17, 18, 19]
    assert emitter.counts == {"sent": 5, "failed": 1, "dropped": 14}
    assert sorted(outcomes) == sorted(["failed"] + ["dropped"] * 14 + ["sent"] * 5)
    assert emitter.close(1)


def test_a_flapping_backend_loses_only_the_probes(backend: LineageBackend) -> None:
    drops: list[str] = []
    emitter = LineageEmitter(
        _client(backend.url), max_queue=200, backoff=(0.05, 0.2), on_drop=drops.append
    )
    deepest = 0
    stop = threading.Event()

    def watch() -> None:
        nonlocal deepest
        while not stop.is_set():
            deepest = max(deepest, emitter.queued["http"])
            time.sleep(0.005)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    sent = 0
    for phase in ("ok", "fail", "ok", "fail", "ok"):
        backend.mode = phase
        for _ in range(40):  # 0.4 s per phase, an event every 10 ms
            emitter.emit(_event(sent))
            sent += 1
            time.sleep(0.01)
    backend.mode = "ok"
    assert emitter.flush(5)
    stop.set()
    watcher.join()
    counts = emitter.counts
    assert sum(counts.values()) == sent == 200  # every event accounted for, once
    assert counts["dropped"] == 0 and drops == []
    # A failure window of 0.4 s costs a handful of probes (at 0, 0.05, 0.15, 0.35 s...), not
    # the 40 events sent during it: they waited and went when it came back.
    assert 2 <= counts["failed"] <= 14, counts
    assert counts["sent"] == sent - counts["failed"]
    got = _numbers(backend)
    assert got == sorted(got) and len(got) == sent  # each event once, in order (probes too)
    assert 0 < deepest <= 200
    assert emitter.close(1)


def test_a_backend_that_hangs_costs_the_other_backend_nothing(backend: LineageBackend) -> None:
    with running_backend("hang") as hanging:
        composite = CompositeTransport(
            CompositeConfig.from_dict(
                {
                    "transports": {
                        "stuck": {**HTTP, "url": hanging.url},  # first: the old way, each
                        "marquez": {**HTTP, "url": backend.url},  # event waited on it
                    }
                }
            )
        )
        emitter = LineageEmitter(OpenLineageClient(transport=composite))
        assert emitter.transport_kind == "composite"
        for n in range(20):
            emitter.emit(_event(n))
        # The healthy backend has them all at once; sent through the composite, each event
        # waited for the stuck backend's 0.5 s timeout first (6 in 3 s).
        _wait(lambda: len(backend.received) == 20, timeout=3)
        assert _numbers(backend) == list(range(20))
        assert emitter.queued["marquez"] == 0
        assert emitter.queued["stuck"] >= 14  # waiting out its rest after a timeout
        assert not emitter.close(0.5)  # what the stuck one still holds is dropped, counted
        counts = emitter.counts
        assert counts["sent"] >= 20 and sum(counts.values()) == 40  # 20 events x 2 backends


def test_a_refusal_does_not_rest_the_backend_a_failure_does(backend: LineageBackend) -> None:
    # A 400 is the backend up and refusing that one event: the next goes at once.
    backend.mode = "refuse"
    emitter = LineageEmitter(_client(backend.url))
    for n in range(3):
        emitter.emit(_event(n))
    assert emitter.flush(BACKOFF_INITIAL / 2)
    assert emitter.counts == {"sent": 0, "failed": 3, "dropped": 0}
    # A 500 is the backend failing: it rests, and the next event waits for it.
    backend.mode = "fail"
    emitter.emit(_event(3))
    emitter.emit(_event(4))
    _wait(lambda: emitter.counts["failed"] == 4)
    time.sleep(0.1)
    assert emitter.counts["failed"] == 4 and emitter.queued == {"http": 1}
    backend.mode = "ok"
    assert emitter.flush(BACKOFF_INITIAL + 2)
    assert emitter.counts == {"sent": 1, "failed": 4, "dropped": 0}
    assert _numbers(backend) == [0, 1, 2, 3, 4]
    assert emitter.close(1)
