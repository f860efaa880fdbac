"""Received lineage in the database: the events, the graph's edges and its tags.

The database is the truth every replica shares; each server keeps the graph in memory and
follows these tables by id (:meth:`LineageTables.since`) to stay current. Edges and tags are
keyed by a hash of their names, so an event reported twice, or by two replicas, adds nothing.

Earlier versions stored the tags Sluicegate derived (its gates' own events, read back) as
datasets' own (their reason is :data:`LEGACY_DERIVED_REASON`). Such rows stay, and the graph
skips them (``LineageIndex.refresh``); a real tag for the same dataset and label takes their
key, so that the first one to arrive is stored all the same.

What is stored comes from :func:`sluicegate.lineage.ingest.parse_event`; this module asks only
for the shape it reads (:class:`ReceivedEvent`), so the store does not import the lineage
package, which imports the store.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import Connection, bindparam, select, update
from sqlalchemy.dialects import postgresql, sqlite

from sluicegate.model import canonical_json, utcnow
from sluicegate.store.facade import Store
from sluicegate.store.schema import lineage_edges, lineage_events, lineage_tags

__all__ = ["LEGACY_DERIVED_REASON", "EdgeRow", "LineageTables", "ReceivedEvent", "TagRow"]

#: The reason under which earlier versions stored each tag of a gate's event, which they kept
#: like any other (a gate's tags name no column): rows with this reason are derived, never a
#: dataset's own. This version stores none. Written out, not computed: it names rows already
#: in databases, and must not follow a change in how tags are described today.
LEGACY_DERIVED_REASON = "OpenLineage tags facet, source SLUICEGATE"

Dataset = tuple[str, str]


class ReceivedEvent(Protocol):
    """What the tables keep of one received event (a
    :class:`~sluicegate.lineage.ingest.LineageRecord` is one)."""

    @property
    def kind(self) -> str:
        """``run``, ``job`` or ``dataset``."""

    @property
    def event_type(self) -> str | None:
        """The run event's ``eventType``."""

    @property
    def event_time(self) -> str:
        """The event's ``eventTime``, as sent."""

    @property
    def producer(self) -> str:
        """The event's ``producer``."""

    @property
    def run_id(self) -> str | None:
        """The run's id (None for a job or dataset event)."""

    @property
    def job(self) -> Dataset | None:
        """The event's job, (namespace, name)."""

    @property
    def moved_by(self) -> Dataset | None:
        """The job its edges are filed under (None: no edges)."""

    @property
    def inputs(self) -> Sequence[Dataset]:
        """The datasets read."""

    @property
    def outputs(self) -> Sequence[Dataset]:
        """The datasets written."""

    @property
    def tags(self) -> Sequence[tuple[Dataset, str, str]]:
        """(dataset, classification, where it came from) of each tag."""

    @property
    def body(self) -> Mapping[str, Any]:
        """The event as received."""


#: (id, job namespace, job name, source namespace, source name, target namespace, target name)
EdgeRow = tuple[int, str, str, str, str, str, str]
#: (id, namespace, name, classification, source)
TagRow = tuple[int, str, str, str, str]

_EDGES_SINCE = (
    select(
        lineage_edges.c.id,
        lineage_edges.c.job_namespace,
        lineage_edges.c.job_name,
        lineage_edges.c.src_namespace,
        lineage_edges.c.src_name,
        lineage_edges.c.dst_namespace,
        lineage_edges.c.dst_name,
    )
    .where(lineage_edges.c.id > bindparam("after"))
    .order_by(lineage_edges.c.id)
    .limit(bindparam("limit"))
)
_TAGS_SINCE = (
    select(
        lineage_tags.c.id,
        lineage_tags.c.namespace,
        lineage_tags.c.name,
        lineage_tags.c.classification,
        lineage_tags.c.source,
    )
    .where(lineage_tags.c.id > bindparam("after"))
    .order_by(lineage_tags.c.id)
    .limit(bindparam("limit"))
)


_DERIVED_HOLDING = select(lineage_tags.c.tag_key).where(
    lineage_tags.c.tag_key.in_(bindparam("keys", expanding=True)),
    lineage_tags.c.source == bindparam("reason"),
)
_RENAME = (
    update(lineage_tags)
    .where(lineage_tags.c.tag_key == bindparam("old"))
    .values(tag_key=bindparam("new"))
)
_CHUNK = 500  # keys per SELECT ... IN, well under any database's limit on parameters


def _key(*parts: str) -> str:
    return hashlib.sha256("\x00".join(parts).encode()).hexdigest()


class LineageTables:
    """Writes and follows the lineage tables of one :class:`Store`."""

    def __init__(self, store: Store) -> None:
        self.store = store
        dialect = postgresql if store.engine.dialect.name == "postgresql" else sqlite
        self._insert_edges = dialect.insert(lineage_edges).on_conflict_do_nothing(
            index_elements=["edge_key"]
        )
        self._insert_tags = dialect.insert(lineage_tags).on_conflict_do_nothing(
            index_elements=["tag_key"]
        )

    def record(self, records: Sequence[ReceivedEvent], now: datetime | None = None) -> None:
        """Store events and their edges and tags in one write."""
        when = now or utcnow()
        with self.store.write() as conn:
            self._record(conn, records, when)

    def _record(self, conn: Connection, records: Sequence[ReceivedEvent], when: datetime) -> None:
        events: list[dict[str, Any]] = []
        edges: dict[str, dict[str, Any]] = {}
        tags: dict[str, dict[str, Any]] = {}
        for r in records:
            events.append(
                {
                    "received_at": when,
                    "event_kind": r.kind,
                    "event_type": r.event_type,
                    "event_time": r.event_time[:64],
                    "run_id": r.run_id,
                    "job_namespace": r.job[0] if r.job else None,
                    "job_name": r.job[1] if r.job else None,
                    "producer": r.producer,
                    "body": canonical_json(dict(r.body)),
                }
            )
            job = r.moved_by
            if job is not None:
                for src in r.inputs:
                    for dst in r.outputs:
                        key = _key(*job, *src, *dst)
                        edges[key] = {
                            "edge_key": key,
                            "job_namespace": job[0],
                            "job_name": job[1],
                            "src_namespace": src[0],
                            "src_name": src[1],
                            "dst_namespace": dst[0],
                            "dst_name": dst[1],
                            "first_seen": when,
                        }
            for (ns, name), label, source in r.tags:
                key = _key(ns, name, label)
                tags.setdefault(
                    key,
                    {
                        "tag_key": key,
                        "namespace": ns,
                        "name": name,
                        "classification": label,
                        "source": source[:512],
                        "first_seen": when,
                    },
                )
        if events:
            conn.execute(lineage_events.insert(), events)
        # Sorted: two writers inserting overlapping keys take their locks in one order.
        if edges:
            conn.execute(self._insert_edges, [edges[k] for k in sorted(edges)])
        if tags:
            keys = sorted(tags)
            self._free_derived_keys(conn, keys)
            conn.execute(self._insert_tags, [tags[k] for k in keys])

    def _free_derived_keys(self, conn: Connection, keys: list[str]) -> None:
        """Move the derived rows an earlier version stored under these keys to keys of their
        own, so that the real tags being written are stored rather than kept out by them.

        Renamed, not deleted: SQLite gives a new row the id of a deleted last row, and a
        follower past that id would never see the new one.
        """
        for i in range(0, len(keys), _CHUNK):
            held = conn.execute(
                _DERIVED_HOLDING, {"keys": keys[i : i + _CHUNK], "reason": LEGACY_DERIVED_REASON}
            ).scalars()
            for key in list(held):
                conn.execute(_RENAME, {"old": key, "new": _key("derived", key)})

    def since(
        self, edge_after: int, tag_after: int, limit: int = 50_000
    ) -> tuple[list[EdgeRow], list[TagRow]]:
        """Edges and tags stored after the given ids, oldest first (at most ``limit`` each)."""
        with self.store.read() as conn:
            edges = conn.execute(_EDGES_SINCE, {"after": edge_after, "limit": limit}).all()
            tags = conn.execute(_TAGS_SINCE, {"after": tag_after, "limit": limit}).all()
        return [tuple(e) for e in edges], [tuple(t) for t in tags]

    def events(self, *, run_id: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        """Stored events (newest first), as received."""

        stmt = select(lineage_events.c.body).order_by(lineage_events.c.id.desc()).limit(limit)
        if run_id is not None:
            stmt = stmt.where(lineage_events.c.run_id == run_id)
        with self.store.read() as conn:
            return [json.loads(b) for b in conn.execute(stmt).scalars()]
