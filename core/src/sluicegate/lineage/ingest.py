"""What the lineage receiver accepts: OpenLineage events, checked as Marquez checks them.

``POST /api/v1/lineage`` takes any integration's events (Airflow's OpenLineage provider through
a composite transport, dbt, Spark, Sluicegate's own gates). :func:`parse_event` refuses what
Marquez's ingest would refuse (a required field missing or of the wrong type, a run id that is
not a UUID, a facet without ``_producer`` or ``_schemaURL``, a ``jobType`` facet without
``jobType``), naming the JSON path of the first problem, and turns the rest into what the graph
needs: one edge per input and output of a run or job, and the classifications that ``tags``
dataset facets give (column tags included).

Of a gate's own events (Sluicegate's, this server's or another's) it takes only facts, as
:mod:`sluicegate.lineage.readback` explains: no tag Sluicegate derived, and the edges under the
gated step's job rather than the gate's.

It checks the structure the spec requires, not every facet's full schema: unknown and custom
facets are kept as they came, as Marquez keeps them.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sluicegate.lineage.readback import DERIVED_SOURCE, gated_step, is_derived

__all__ = [
    "DERIVED_REASON",
    "LineageRecord",
    "LineageRejected",
    "classification_of_tag",
    "parse_event",
]

EVENT_TYPES = frozenset({"START", "RUNNING", "COMPLETE", "ABORT", "FAIL", "OTHER"})
_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:\S*$")
_CLASSIFICATION = re.compile(r"^[a-z0-9][a-z0-9_.:-]{0,63}$")
#: Tag keys whose value names the classification (``{"key": "classification", "value": "pii"}``).
CLASSIFICATION_KEYS = frozenset({"classification", "classifications", "data_classification"})
#: Tag values that make the key itself the classification (``{"key": "pii", "value": "true"}``).
_TRUE = frozenset({"true", "yes", "1", ""})

Dataset = tuple[str, str]
Job = tuple[str, str]


class LineageRejected(ValueError):
    """The event is not one Marquez would ingest; ``str()`` says why, naming the JSON path."""

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(f"{path}: {problem}" if path else problem)
        self.path = path


@dataclass(frozen=True)
class LineageRecord:
    """An accepted event and what the graph takes from it."""

    kind: str  # run | job | dataset
    event_type: str | None
    event_time: str
    producer: str
    run_id: str | None
    job: Job | None
    inputs: tuple[Dataset, ...] = ()
    outputs: tuple[Dataset, ...] = ()
    #: (dataset, classification, where it came from), from ``tags`` dataset facets.
    tags: tuple[tuple[Dataset, str, str], ...] = ()
    body: Mapping[str, Any] = field(default_factory=dict)
    #: For a gate's event, the job of the step it gates (see :attr:`moved_by`).
    gated_step: Job | None = None

    @property
    def moved_by(self) -> Job | None:
        """The job through which the inputs became the outputs: the step a gate's event is
        about, else the event's own job (None for a DatasetEvent)."""
        return self.gated_step or self.job


def parse_event(body: Any) -> LineageRecord:
    """Check ``body`` (a decoded JSON value) and extract its lineage; raises LineageRejected."""
    if not isinstance(body, dict):
        raise LineageRejected("", "an OpenLineage event is a JSON object")
    event_time = _string(body, "eventTime", "")
    try:
        datetime.fromisoformat(event_time.replace("Z", "+00:00"))
    except ValueError:
        raise LineageRejected("eventTime", "is not an ISO-8601 date-time") from None
    producer = _uri(body, "producer", "")
    _uri(body, "schemaURL", "")
    tags: list[tuple[Dataset, str, str]] = []
    if "run" in body:
        return _run_event(body, event_time, producer, tags)
    if "dataset" in body:
        _dataset(body["dataset"], "dataset", tags)
        return LineageRecord(
            "dataset", None, event_time, producer, None, None, (), (), tuple(tags), body
        )
    if "job" in body:
        job = _job(body["job"], "job")
        inputs, outputs = _datasets(body, tags)
        return LineageRecord(
            "job",
            None,
            event_time,
            producer,
            None,
            job,
            inputs,
            outputs,
            tuple(tags),
            body,
        )
    raise LineageRejected(
        "", "has none of run, job, dataset: not a RunEvent, JobEvent or DatasetEvent"
    )


def _run_event(
    body: dict[str, Any], event_time: str, producer: str, tags: list[tuple[Dataset, str, str]]
) -> LineageRecord:
    event_type = body.get("eventType")
    if event_type is not None and event_type not in EVENT_TYPES:
        raise LineageRejected("eventType", f"must be one of {', '.join(sorted(EVENT_TYPES))}")
    run = body["run"]
    if not isinstance(run, dict):
        raise LineageRejected("run", "must be an object")
    run_id = _string(run, "runId", "run.")
    try:
        uuid.UUID(run_id)
    except ValueError:
        raise LineageRejected("run.runId", "is not a UUID") from None
    _facets(run.get("facets"), "run.facets")
    if "job" not in body:
        raise LineageRejected("job", "is required")
    job = _job(body["job"], "job")
    inputs, outputs = _datasets(body, tags)
    return LineageRecord(
        "run",
        event_type,
        event_time,
        producer,
        run_id,
        job,
        inputs,
        outputs,
        tuple(tags),
        body,
        gated_step=gated_step(body),
    )


def _job(value: Any, path: str) -> Job:
    if not isinstance(value, dict):
        raise LineageRejected(path, "must be an object")
    job = (_string(value, "namespace", f"{path}."), _string(value, "name", f"{path}."))
    facets = _facets(value.get("facets"), f"{path}.facets")
    job_type = facets.get("jobType")
    if job_type is not None:
        for key in ("processingType", "integration", "jobType"):
            _string(job_type, key, f"{path}.facets.jobType.")
    return job


def _datasets(
    body: dict[str, Any], tags: list[tuple[Dataset, str, str]]
) -> tuple[tuple[Dataset, ...], tuple[Dataset, ...]]:
    found: list[tuple[Dataset, ...]] = []
    for role, extra in (("inputs", "inputFacets"), ("outputs", "outputFacets")):
        items = body.get(role)
        if items is None:
            found.append(())
            continue
        if not isinstance(items, list):
            raise LineageRejected(role, "must be an array")
        datasets: list[Dataset] = []
        for i, item in enumerate(items):
            path = f"{role}[{i}]"
            datasets.append(_dataset(item, path, tags))
            _facets(item.get(extra), f"{path}.{extra}")
        found.append(tuple(datasets))
    return found[0], found[1]


def _dataset(value: Any, path: str, tags: list[tuple[Dataset, str, str]]) -> Dataset:
    if not isinstance(value, dict):
        raise LineageRejected(path, "must be an object")
    ds = (_string(value, "namespace", f"{path}."), _string(value, "name", f"{path}."))
    facets = _facets(value.get("facets"), f"{path}.facets")
    tag_facet = facets.get("tags")
    if tag_facet is not None:
        items = tag_facet.get("tags", [])
        if not isinstance(items, list):
            raise LineageRejected(f"{path}.facets.tags.tags", "must be an array")
        for j, tag in enumerate(items):
            tag_path = f"{path}.facets.tags.tags[{j}]"
            if not isinstance(tag, dict):
                raise LineageRejected(tag_path, "must be an object")
            key, val = (
                _string(tag, "key", f"{tag_path}."),
                _string(tag, "value", f"{tag_path}.", empty=True),
            )
            if is_derived(tag.get("source")):
                continue  # Sluicegate's own inference, true under today's policy only
            for c in classification_of_tag(key, val):
                tags.append((ds, c, _tag_source(tag)))
    return ds


def classification_of_tag(key: str, value: str) -> list[str]:
    """The classifications one OpenLineage tag gives a dataset (none for other tags).

    ``{"key": "pii", "value": "true"}`` gives ``pii``; ``{"key": "classification", "value":
    "pii,secret"}`` gives both; ``{"key": "owner", "value": "@ann"}`` gives nothing.
    """
    k, v = key.strip().lower(), value.strip().lower()
    if k in CLASSIFICATION_KEYS:
        labels = [part.strip() for part in v.split(",")]
    elif v in _TRUE:
        labels = [k]
    else:
        return []
    return [label for label in labels if _CLASSIFICATION.match(label)]


def _tag_source(tag: Mapping[str, Any]) -> str:
    where = "OpenLineage tags facet"
    column = tag.get("field")
    if isinstance(column, str) and column:
        where += f", column {column[:128]}"
    source = tag.get("source")
    if isinstance(source, str) and source:
        where += f", source {source[:64]}"
    return where


#: How earlier versions stored each tag of a gate's event, which they kept like any other
#: (a gate's tags name no column): rows with this reason are derived, never a dataset's own.
#: This version stores none.
DERIVED_REASON = _tag_source({"source": DERIVED_SOURCE})


def _facets(value: Any, path: str) -> dict[str, dict[str, Any]]:
    """A facets object: each facet an object carrying ``_producer`` and ``_schemaURL``."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise LineageRejected(path, "must be an object")
    for name, facet in value.items():
        if not isinstance(facet, dict):
            raise LineageRejected(f"{path}.{name}", "a facet must be an object")
        _uri(facet, "_producer", f"{path}.{name}.")
        _uri(facet, "_schemaURL", f"{path}.{name}.")
    return value


def _string(obj: Mapping[str, Any], key: str, prefix: str, *, empty: bool = False) -> str:
    value = obj.get(key)
    if value is None:
        raise LineageRejected(prefix + key, "is required")
    if not isinstance(value, str):
        raise LineageRejected(prefix + key, "must be a string")
    if not value and not empty:
        raise LineageRejected(prefix + key, "must not be empty")
    if "\x00" in value:
        raise LineageRejected(prefix + key, "must not contain NUL")
    return value


def _uri(obj: Mapping[str, Any], key: str, prefix: str) -> str:
    value = _string(obj, key, prefix)
    if not _URI.match(value):
        raise LineageRejected(prefix + key, "must be a URI")
    return value
