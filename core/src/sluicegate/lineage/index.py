"""The server's view of lineage: the dataset graph kept current from the database.

Each server process holds a :class:`~sluicegate.lineage.graph.LineageGraph` built from the
lineage tables and follows them by id: what this process receives is applied at once, what
other processes and replicas store is picked up by :meth:`LineageIndex.refresh`, which a gate
runs before it classifies (at most every ``max_age`` seconds, coalesced across callers). Ids
follow commit order because every write transaction first locks the audit head, so a follower
reading ``id > last`` never skips a row that commits late.

:meth:`LineageIndex.classify` answers, for an action, each dataset's effective classifications
with where each came from: the pipeline, a ``classify`` rule, a ``tags`` facet, or a path
through the graph from a dataset that carries it. The policy matches on those.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

from sluicegate.lineage.graph import Hop, LineageGraph, Provenance, Subgraph
from sluicegate.model import Action, ClassificationSource, LineageHop
from sluicegate.policy import Policy
from sluicegate.store import Store
from sluicegate.store.lineage import LEGACY_DERIVED_REASON, LineageTables

__all__ = ["Classified", "LineageIndex"]

Dataset = tuple[str, str]


@dataclass(frozen=True)
class Classified:
    """An action's datasets, classified."""

    #: (namespace, name) -> classifications lineage and tags add (what the policy inherits).
    inherited: dict[Dataset, frozenset[str]]
    #: "namespace::name" -> every effective classification and where it came from.
    sources: dict[str, tuple[ClassificationSource, ...]]


class LineageIndex:
    """The graph of one server process, over the store's lineage tables."""

    def __init__(self, store: Store, policy: Policy, *, max_age: float = 0.05) -> None:
        self.tables = LineageTables(store)
        self.policy = policy
        self.max_age = max_age
        self.graph = LineageGraph(
            classify=lambda ds: policy.own_classifications(*ds),
            declassify=lambda job: policy.declassified_by(*job),
        )
        self._edge_cursor = 0
        self._tag_cursor = 0
        self._refreshed = 0.0
        self._lock = threading.Lock()

    # ---- keeping current

    @property
    def stale(self) -> bool:
        """True when the last look at the tables is older than ``max_age`` (callers skip the
        thread hop of :meth:`refresh` otherwise)."""
        return time.monotonic() - self._refreshed >= self.max_age

    def refresh(self, max_age: float | None = None) -> None:
        """Apply what the tables gained since the last look, unless that look is recent."""
        limit = self.max_age if max_age is None else max_age
        if time.monotonic() - self._refreshed < limit:
            return
        with self._lock:  # one caller reads; the others wait for it, then find it fresh
            if time.monotonic() - self._refreshed < limit:
                return
            started = time.monotonic()
            while True:
                edges, tags = self.tables.since(self._edge_cursor, self._tag_cursor)
                for tag_id, ns, name, label, source in tags:
                    # An earlier version's copy of a label this server derived is no fact
                    # about the dataset; the graph derives it again if the policy still does.
                    if source != LEGACY_DERIVED_REASON:
                        self.graph.add_tags((ns, name), {label: source})
                    self._tag_cursor = tag_id
                for edge_id, jns, jname, sns, sname, dns, dname in edges:
                    self.graph.add_run((jns, jname), [(sns, sname)], [(dns, dname)])
                    self._edge_cursor = edge_id
                if len(edges) < 50_000 and len(tags) < 50_000:
                    break
            self._refreshed = started

    # ---- answers

    def classify(self, action: Action) -> Classified:
        """Each dataset of ``action`` with its effective classifications and their sources."""
        inherited: dict[Dataset, frozenset[str]] = {}
        sources: dict[str, tuple[ClassificationSource, ...]] = {}
        for asset in action.assets:
            found = self.sources_of(asset.namespace, asset.name, asset.classifications)
            sources[str(asset)] = found
            extra = frozenset(c.classification for c in found) - set(asset.classifications)
            if extra:
                inherited[(asset.namespace, asset.name)] = extra
        return Classified(inherited, sources)

    def sources_of(
        self, namespace: str, name: str, given: Sequence[str] = ()
    ) -> tuple[ClassificationSource, ...]:
        """A dataset's effective classifications: those ``given`` by the pipeline, then what
        the graph knows (``classify`` rules, tags facets, lineage)."""
        out = {
            c: ClassificationSource(classification=c, source="given by the pipeline") for c in given
        }
        for label, prov in self.graph.classifications((namespace, name)).items():
            out.setdefault(label, _source_of(prov))
        return tuple(out[c] for c in sorted(out))

    def upstream(self, dataset: Dataset, depth: int) -> Subgraph:
        return self.graph.upstream(dataset, depth)

    def downstream(self, dataset: Dataset, depth: int) -> Subgraph:
        return self.graph.downstream(dataset, depth)


def _source_of(prov: Provenance) -> ClassificationSource:
    origin = f"{prov.origin[0]}::{prov.origin[1]}"
    source = prov.reason if not prov.path else f"{prov.reason} on {origin}, through lineage"
    return ClassificationSource(
        classification=prov.label, source=source, path=tuple(_hop(h) for h in prov.path)
    )


def _hop(hop: Hop) -> LineageHop:
    return LineageHop(
        namespace=hop.dataset[0], name=hop.dataset[1], job=f"{hop.job[0]}::{hop.job[1]}"
    )
