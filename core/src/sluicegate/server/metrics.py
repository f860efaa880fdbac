"""Prometheus metrics: gates opened by outcome, decisions, decision latency, pending requests.

Counters are per process (Prometheus sums replicas); the pending gauge is read from the
database at scrape time, so every replica reports the same, true number.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from sluicegate.model import Status
from sluicegate.server.hub import StatusHub
from sluicegate.store import Store

__all__ = ["CONTENT_TYPE", "Metrics"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class _Live(Collector):
    def __init__(self, store: Store, hub: StatusHub) -> None:
        self.store = store
        self.hub = hub

    def collect(self) -> Iterator[GaugeMetricFamily]:
        pending = GaugeMetricFamily(
            "sluicegate_pending_requests", "Requests waiting for a decision"
        )
        pending.add_metric([], self.store.count(Status.PENDING))
        yield pending
        waiting = GaugeMetricFamily(
            "sluicegate_long_polls_waiting", "Long polls waiting in this process"
        )
        waiting.add_metric([], self.hub.waiting)
        yield waiting


class Metrics:
    """This process's metrics."""

    def __init__(self, store: Store, hub: StatusHub) -> None:
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
        self.registry.register(_Live(store, hub))

    def count_batch(self, calls: int) -> None:
        """One committed write batch of ``calls`` writes (``Writer.on_commit``)."""
        self.write_batches.inc()
        self.write_calls.inc(calls)

    def render(self) -> bytes:
        """The text exposition format."""
        return generate_latest(self.registry)
