"""Lineage: the gate's OpenLineage events, and the dataset graph that classifications follow.

- ``facet``, ``events``: the ``sluicegate_approval`` run facet and the RunEvents a gate emits
  (START when it opens, OTHER for an intermediate decision, COMPLETE when released, FAIL when
  denied, ABORT when expired or cancelled).
- ``emitter``: sends events through the transport OpenLineage's own configuration names, from
  a background thread, so a slow or dead backend never holds a pipeline step.
- ``ingest``, ``readback``: the receiver's reading of OpenLineage events, and what of a gate's
  own events it may take as fact (never a classification Sluicegate derived).
- ``graph``: the in-memory dataset graph that the server builds from the events it receives,
  and the classifications that flow down it (data derived from ``pii`` is ``pii``).
"""
