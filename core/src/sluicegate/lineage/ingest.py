"""What the lineage receiver accepts: OpenLineage events, read as Marquez reads them.

``POST /api/v1/lineage`` takes any integration's events (Airflow's OpenLineage provider through
a composite transport, dbt, Spark, Sluicegate's own gates). By default :func:`parse_event`
accepts what Marquez stores and checks only what the graph and the store need: the event's
time and producer, a run id that is a UUID (Marquez refuses others too), the names of its job
and datasets, and the facets Sluicegate reads (``jobType`` and ``parent``, which place a gate's
edges, and ``tags``, which classify). So Marquez's own example events (no ``schemaURL``), a
``producer`` that is not a URI and custom facets without ``_schemaURL`` are stored, as Marquez
stores them; unknown and custom facets are kept as they came.

With ``strict=True`` (the ``lineage.strict`` setting) it also refuses what the OpenLineage spec
requires and Marquez lets through: ``schemaURL`` and ``producer`` as URIs, an ``eventType`` of
the spec, every facet an object with ``_producer`` and ``_schemaURL``, a ``jobType`` facet with
``processingType``, ``integration`` and ``jobType``.

A refusal names the JSON path of the first problem and answers as Marquez does: 422 for a
required field that is missing, 400 for a value of the wrong type or form (a run id that is not
a UUID included). What the graph needs from an accepted event is one edge per input and output
of a run or job, and the classifications that ``tags`` dataset facets give (column tags
included).

Of a gate's own events (Sluicegate's, this server's or another's) it takes only facts, as
:mod:`sluicegate.lineage.readback` explains: no tag Sluicegate derived, and the edges under the
gated step's job rather than the gate's.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sluicegate.lineage.readback import gated_step, is_derived

__all__ = [
    "MAX_NAME_LENGTH",
    "LineageRecord",
    "LineageRejected",
    "classification_of_tag",
    "parse_event",
]

EVENT_TYPES = frozenset({"START", "RUNNING", "COMPLETE", "ABORT", "FAIL", "OTHER"})
#: Job and dataset names and namespaces longer than this are refused (the store's columns).
MAX_NAME_LENGTH = 1024
_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:\S*$")
# The form Marquez's UUID.fromString and every OpenLineage client write (the store's column
# holds 36 characters): Python's UUID() would also take braces and "urn:uuid:".
_UUID = re.compile(r"^[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}$")
_CLASSIFICATION = re.compile(r"^[a-z0-9][a-z0-9_.:-]{0,63}$")
#: Tag keys whose value names the classification (``{"key": "classification", "value": "pii"}``).
CLASSIFICATION_KEYS = frozenset({"classification", "classifications", "data_classification"})
#: Tag values that make the key itself the classification (``{"key": "pii", "value": "true"}``).
_TRUE = frozenset({"true", "yes", "1", ""})
_EVENT_TYPE_COLUMN = 16  # the store keeps this much of an eventType it does not know

Dataset = tuple[str, str]
Job = tuple[str, str]


class LineageRejected(ValueError):
    """The event (or its body) is not one the receiver stores; ``str()`` says why, naming the
    JSON path.

    ``status`` is the HTTP answer Marquez gives to the same problem (422: a required field is
    missing; 400: a value of the wrong type or form), ``code`` the error code of the answer and
    ``reason`` the label it is counted under (``missing_field``, ``invalid_field``, or what
    :mod:`sluicegate.server.api.lineage` found wrong with the body).
    """

    def __init__(
        self,
        path: str,
        problem: str,
        *,
        status: int = 400,
        reason: str = "invalid_field",
        code: str = "invalid_event",
    ) -> None:
        super().__init__(f"{path}: {problem}" if path else problem)
        self.path = path
        self.status = status
        self.reason = reason
        self.code = code


def _missing(path: str) -> LineageRejected:
    return LineageRejected(path, "is required", status=422, reason="missing_field")


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


def parse_event(body: Any, *, strict: bool = False) -> LineageRecord:
    """Check ``body`` (a decoded JSON value) and extract its lineage; raises LineageRejected.

    ``strict`` adds the spec's requirements that Marquez does not enforce (see the module).
    """
    return _Reader(strict).event(body)


class _Reader:
    """One event's reading, lenient or strict."""

    def __init__(self, strict: bool) -> None:
        self.strict = strict
        self.tags: list[tuple[Dataset, str, str]] = []

    def event(self, body: Any) -> LineageRecord:
        if not isinstance(body, dict):
            raise LineageRejected("", "an OpenLineage event is a JSON object")
        event_time = _string(body, "eventTime", "")
        try:
            datetime.fromisoformat(event_time.replace("Z", "+00:00"))
        except ValueError:
            raise LineageRejected("eventTime", "is not an ISO-8601 date-time") from None
        producer = _string(body, "producer", "")
        if self.strict:
            _uri(body, "producer", "")
            _uri(body, "schemaURL", "")
        elif body.get("schemaURL") is not None:
            _string(body, "schemaURL", "")
        if "run" in body:
            return self._run_event(body, event_time, producer)
        if "dataset" in body:
            self._dataset(body["dataset"], "dataset")
            return LineageRecord(
                "dataset", None, event_time, producer, None, None, (), (), tuple(self.tags), body
            )
        if "job" in body:
            job = self._job(body["job"], "job")
            inputs, outputs = self._datasets(body)
            return LineageRecord(
                "job",
                None,
                event_time,
                producer,
                None,
                job,
                inputs,
                outputs,
                tuple(self.tags),
                body,
            )
        raise LineageRejected(
            "", "has none of run, job, dataset: not a RunEvent, JobEvent or DatasetEvent"
        )

    def _run_event(self, body: dict[str, Any], event_time: str, producer: str) -> LineageRecord:
        event_type = body.get("eventType")
        if event_type is not None:
            event_type = _string(body, "eventType", "")
            if self.strict and event_type not in EVENT_TYPES:
                raise LineageRejected(
                    "eventType", f"must be one of {', '.join(sorted(EVENT_TYPES))}"
                )
            # Marquez takes any eventType (an unknown one is a run still going); so do we.
            event_type = event_type[:_EVENT_TYPE_COLUMN]
        run = body["run"]
        if run is None:
            raise _missing("run")
        if not isinstance(run, dict):
            raise LineageRejected("run", "must be an object")
        run_id = _string(run, "runId", "run.")
        if not _UUID.match(run_id):
            raise LineageRejected("run.runId", "is not a UUID")
        self._facets(run.get("facets"), "run.facets")
        job = self._job(body.get("job"), "job")
        inputs, outputs = self._datasets(body)
        return LineageRecord(
            "run",
            event_type,
            event_time,
            producer,
            run_id,
            job,
            inputs,
            outputs,
            tuple(self.tags),
            body,
            gated_step=gated_step(body),
        )

    def _job(self, value: Any, path: str) -> Job:
        if value is None:
            raise _missing(path)
        if not isinstance(value, dict):
            raise LineageRejected(path, "must be an object")
        job = (_name(value, "namespace", f"{path}."), _name(value, "name", f"{path}."))
        facets = self._facets(value.get("facets"), f"{path}.facets")
        # Read to tell a gate's events from others (readback.gated_step): an object, always.
        job_type = _facet(facets, "jobType", f"{path}.facets")
        if job_type is not None and self.strict:
            for key in ("processingType", "integration", "jobType"):
                _string(job_type, key, f"{path}.facets.jobType.")
        return job

    def _datasets(self, body: dict[str, Any]) -> tuple[tuple[Dataset, ...], tuple[Dataset, ...]]:
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
                datasets.append(self._dataset(item, path))
                if self.strict:
                    self._facets(item.get(extra), f"{path}.{extra}")
            found.append(tuple(datasets))
        return found[0], found[1]

    def _dataset(self, value: Any, path: str) -> Dataset:
        if value is None:
            raise _missing(path)
        if not isinstance(value, dict):
            raise LineageRejected(path, "must be an object")
        ds = (_name(value, "namespace", f"{path}."), _name(value, "name", f"{path}."))
        facets = self._facets(value.get("facets"), f"{path}.facets")
        tag_facet = _facet(facets, "tags", f"{path}.facets")
        if tag_facet is None:
            return ds
        # The one facet that classifies: a tag it cannot read is refused, never skipped, so
        # that the sender hears of it rather than the data going unclassified.
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
                self.tags.append((ds, c, _tag_source(tag)))
        return ds

    def _facets(self, value: Any, path: str) -> dict[str, Any]:
        """A facets object; strict: each facet an object carrying ``_producer`` and
        ``_schemaURL`` (Marquez requires them of the facets it knows only)."""
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise LineageRejected(path, "must be an object")
        if self.strict:
            for name, facet in value.items():
                if not isinstance(facet, dict):
                    raise LineageRejected(f"{path}.{name}", "a facet must be an object")
                _uri(facet, "_producer", f"{path}.{name}.")
                _uri(facet, "_schemaURL", f"{path}.{name}.")
        return value


def _facet(facets: Mapping[str, Any], name: str, path: str) -> dict[str, Any] | None:
    """A facet Sluicegate reads: absent (None), or an object."""
    facet = facets.get(name)
    if facet is None:
        return None
    if not isinstance(facet, dict):
        raise LineageRejected(f"{path}.{name}", "a facet must be an object")
    return facet


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


def _string(obj: Mapping[str, Any], key: str, prefix: str, *, empty: bool = False) -> str:
    value = obj.get(key)
    if value is None:
        raise _missing(prefix + key)
    if not isinstance(value, str):
        raise LineageRejected(prefix + key, "must be a string")
    if not value and not empty:
        raise LineageRejected(prefix + key, "must not be empty")
    if "\x00" in value:
        raise LineageRejected(prefix + key, "must not contain NUL")
    return value


def _name(obj: Mapping[str, Any], key: str, prefix: str) -> str:
    """A job's or dataset's namespace or name: what the graph's edges are made of."""
    value = _string(obj, key, prefix)
    if len(value) > MAX_NAME_LENGTH:
        raise LineageRejected(prefix + key, f"is longer than {MAX_NAME_LENGTH} characters")
    return value


def _uri(obj: Mapping[str, Any], key: str, prefix: str) -> str:
    value = _string(obj, key, prefix)
    if not _URI.match(value):
        raise LineageRejected(prefix + key, "must be a URI")
    return value
