"""Prometheus metrics: gates opened by outcome, decisions, decision latency, pending requests.

A scrape reports the whole server. With ``serve --workers N`` each process counts into its own
files in ``PROMETHEUS_MULTIPROC_DIR`` (a private directory the parent makes before it starts
them: :func:`sluicegate.server.run.run_workers`) and any process answering a scrape adds all of
them up (Prometheus' multiprocess mode); a single process counts in memory and writes no file.
The pending gauge is read from the database at scrape time, so every replica reports the same,
true number; replicas on several machines are summed by Prometheus as usual.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    values,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from sluicegate.model import Channel, Status, Verdict
from sluicegate.store import DecisionOutcome, Store

__all__ = ["CONTENT_TYPE", "MULTIPROC_ENV", "Metrics"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

#: Set for a process before it imports prometheus_client: its metrics are then kept in files
#: there, shared with its sibling processes (prometheus_client reads it once, at import).
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


class _Pending(Collector):
    """The requests waiting for a decision, as the database has them at scrape time."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def collect(self) -> Iterator[GaugeMetricFamily]:
        pending = GaugeMetricFamily(
            "sluicegate_pending_requests", "Requests waiting for a decision"
        )
        pending.add_metric([], self.store.count(Status.PENDING))
        yield pending


class Metrics:
    """The server's metrics, as this process counts them and a scrape reports them."""

    def __init__(self, store: Store) -> None:
        #: Where every process of this server keeps its counts, or None: this process alone.
        #: Files only if prometheus_client keeps its values in them, which it chose when it
        #: was imported: a variable set later must not make scrapes read empty files.
        in_files = values.ValueClass is not values.MutexValue
        self.multiprocess_dir = (os.environ.get(MULTIPROC_ENV) or None) if in_files else None
        self.registry = CollectorRegistry()
        self.gates = Counter(
            "sluicegate_gates_opened",
            "Gates opened, by the answer given",
            ["status"],
            registry=self.registry,
        )
        self.decisions = Counter(
            "sluicegate_decisions",
            "Decisions recorded, by verdict and channel",
            ["verdict", "channel"],
            registry=self.registry,
        )
        self.rejected = Counter(
            "sluicegate_decisions_rejected",
            "Decisions refused (ineligible, self-approval, bad link)",
            registry=self.registry,
        )
        self.ended = Counter(
            "sluicegate_requests_ended",
            "Requests that reached a terminal status",
            ["status"],
            registry=self.registry,
        )
        self.write_batches = Counter(
            "sluicegate_write_batches",
            "Write transactions committed by the writer (group commit)",
            registry=self.registry,
        )
        self.write_calls = Counter(
            "sluicegate_write_calls",
            "Writes committed by the writer, over all its batches",
            registry=self.registry,
        )
        self.lineage_received = Counter(
            "sluicegate_lineage_events_received",
            "OpenLineage events received by POST /api/v1/lineage, stored or rejected",
            ["outcome"],
            registry=self.registry,
        )
        self.lineage_emitted = Counter(
            "sluicegate_lineage_events_emitted",
            "The gates' own OpenLineage events: sent, failed (backend down or refusing), "
            "or dropped (the send queue was full)",
            ["outcome"],
            registry=self.registry,
        )
        self.lineage_refused = Counter(
            "sluicegate_lineage_events_refused",
            "OpenLineage events refused by POST /api/v1/lineage, by reason (missing_field, "
            "invalid_field, malformed_json, too_deep, invalid_text, too_large, bad_encoding, "
            "unsupported_encoding)",
            ["reason"],
            registry=self.registry,
        )
        self.lineage_dropped = Counter(
            "sluicegate_lineage_events_dropped",
            "The gates' own OpenLineage events dropped unsent, by reason: queue_full (a "
            "backend's queue was full: its oldest event made room), shutdown (still queued "
            "when the server stopped)",
            ["reason"],
            registry=self.registry,
        )
        self.notifications = Counter(
            "sluicegate_notifications",
            "Notification sends by channel and outcome (sent, skipped, retried, failed)",
            ["channel", "outcome"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "sluicegate_decision_latency_seconds",
            "From a request's creation to its final decision",
            buckets=(
                1,
                5,
                15,
                30,
                60,
                300,
                900,
                1800,
                3600,
                4 * 3600,
                12 * 3600,
                24 * 3600,
                72 * 3600,
            ),
            registry=self.registry,
        )
        self.long_polls = Gauge(
            "sluicegate_long_polls_waiting",
            "Long polls waiting, over all the server's processes",
            multiprocess_mode="livesum",
            registry=self.registry,
        )
        self._pending = _Pending(store)
        self.registry.register(self._pending)

    def count_batch(self, calls: int) -> None:
        """One committed write batch of ``calls`` writes (``Writer.on_commit``)."""
        self.write_batches.inc()
        self.write_calls.inc(calls)

    def count_decision(self, outcome: DecisionOutcome, verdict: Verdict, channel: Channel) -> None:
        """A recorded decision; if it ended its request, the end and the time it took."""
        self.decisions.labels(verdict.value, channel.value).inc()
        if outcome.ended is None:
            return
        self.ended.labels(outcome.ended.value).inc()
        req = outcome.request
        last = req.decisions[-1].decided_at if req.decisions else None
        if last is not None:
            self.latency.observe(max(0.0, (last - req.created_at).total_seconds()))

    def count_notification(self, channel: str, outcome: str) -> None:
        """One notification send's outcome (the dispatcher's ``on_result``)."""
        self.notifications.labels(channel, outcome).inc()

    def count_lineage_sent(self, outcome: str) -> None:
        """One of the requests' own lineage events, sent or failed (the emitter's)."""
        self.lineage_emitted.labels(outcome).inc()

    def count_lineage_dropped(self, reason: str) -> None:
        """One of the requests' own lineage events, dropped unsent (the emitter's)."""
        self.lineage_dropped.labels(reason).inc()

    def render(self) -> bytes:
        """The text exposition format: every process's counts, and the database's gauge."""
        if self.multiprocess_dir is None:
            return generate_latest(self.registry)
        # Built per scrape, as prometheus_client prescribes: the collector reads the files of
        # every process, this one's included, so this process's registry is not rendered.
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=self.multiprocess_dir)  # type: ignore[no-untyped-call]
        registry.register(self._pending)
        return generate_latest(registry)
