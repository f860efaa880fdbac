"""The gate's own events, read back: what a receiver may take from them as fact.

Users send the server's gate events to Sluicegate's own receiver too (one leg of a composite
transport beside Marquez), so whatever a gate's event says comes back as lineage. Two of the
things it says are not facts about the data, and kept as facts they would outlive the policy
that produced them:

- **Derived tags.** Each dataset carries a ``tags`` facet of its *effective* classifications,
  so that Marquez shows what the policy matched on. Only the labels the pipeline declared in
  its action (:data:`DECLARED_SOURCE`) are facts about the dataset; the others Sluicegate
  derived from its ``classify`` rules and from lineage (:data:`DERIVED_SOURCE`, which earlier
  versions wrote on every tag). Taken back as the dataset's own, a derived label would be
  permanent: a ``declassify`` rule added later could not lift an inherited label, and a
  ``classify`` rule removed later would still apply. The receiver drops every tag whose
  source :func:`is_derived`, whichever Sluicegate server or version sent it.
- **The gate's job.** A gate moves no data: its inputs and outputs are those of the step it
  gates. Filed under the gate's job, they would form edges that no ``declassify`` rule names,
  so a masking step that is gated would leak what it masks. The receiver files them under the
  step's job instead: the ``parent`` facet's, which the adapters fill with the identity their
  orchestrator's OpenLineage integration gives the step (:func:`gated_step`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeGuard

__all__ = [
    "DECLARED_SOURCE",
    "DERIVED_SOURCE",
    "GATE_INTEGRATION",
    "GATE_JOB_TYPE",
    "gated_step",
    "is_derived",
]

#: A tag's ``source`` for a label the pipeline declared on the dataset in its action.
DECLARED_SOURCE = "PIPELINE"

#: A tag's ``source`` for a label Sluicegate derived (a ``classify`` rule, lineage).
DERIVED_SOURCE = "SLUICEGATE"

#: The ``jobType`` facet's ``integration`` and ``jobType`` on every gate's job.
GATE_INTEGRATION = "SLUICEGATE"
GATE_JOB_TYPE = "APPROVAL_GATE"


def is_derived(source: object) -> bool:
    """Whether a ``tags`` facet entry's ``source`` marks a label Sluicegate derived."""
    return isinstance(source, str) and source.strip().upper() == DERIVED_SOURCE


def gated_step(event: Mapping[str, Any]) -> tuple[str, str] | None:
    """The job of the step a gate's event is about, or None for any other event.

    That is the ``parent`` facet's job on an event whose ``jobType`` facet is a gate's. Without
    a usable parent the gate's own job stays: an edge filed under a name no rule matches,
    never an edge lost. ``event`` is a RunEvent whose structure the caller already checked.
    """
    facets = event["job"].get("facets") or {}
    job_type = facets.get("jobType") or {}
    if (job_type.get("integration"), job_type.get("jobType")) != (GATE_INTEGRATION, GATE_JOB_TYPE):
        return None
    parent = (event["run"].get("facets") or {}).get("parent")
    step = parent.get("job") if isinstance(parent, dict) else None
    if not isinstance(step, dict):
        return None
    namespace, name = step.get("namespace"), step.get("name")
    if _usable(namespace) and _usable(name):
        return (namespace, name)
    return None


def _usable(part: object) -> TypeGuard[str]:
    return isinstance(part, str) and bool(part) and "\x00" not in part
