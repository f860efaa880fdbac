"""Validate OpenLineage events offline: the spec, every facet's own schema, and Marquez's rules.

``OpenLineage.json`` alone accepts any facet content (facets are ``additionalProperties``
there, checked only for ``_producer``/``_schemaURL``), so :func:`validate_event` also checks
each facet against its own file in ``facets/`` (and Sluicegate's against
``spec/facets/<version>/``), chosen by the facet's key and where it sits (run, job, dataset,
inputFacets, outputFacets). Every ``$ref`` resolves through a ``referencing.Registry`` built
from those files by their ``$id``: nothing is fetched.

The reference schemas are kept in the repository, in ``tests/data/openlineage-spec`` (their
version and license in ``tests/data/README.md``; ``$SLUICEGATE_OPENLINEAGE_SPEC`` points at
another copy). When they are missing, validation fails, saying where it looked: it never
passes unchecked.
"""

from __future__ import annotations

import functools
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from jsonschema import Draft202012Validator, FormatChecker
from jsonschema.exceptions import best_match
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from .paths import ROOT as REPO

SLUICEGATE_SPEC = REPO / "spec" / "facets"
DEFAULT_OPENLINEAGE_SPEC = REPO / "tests" / "data" / "openlineage-spec"
OPENLINEAGE_ID = "https://openlineage.io/spec/2-0-2/OpenLineage.json"

# Where a facet sits in an event -> the OpenLineage base its schema extends.
_BASES = {
    "RunFacet": "run",
    "JobFacet": "job",
    "DatasetFacet": "dataset",
    "InputDatasetFacet": "inputFacets",
    "OutputDatasetFacet": "outputFacets",
}
LOCATIONS = tuple(_BASES.values())


class SchemaError(AssertionError):
    """An event or facet does not validate, or the schemas to validate it are missing."""


def spec_dir() -> Path:
    """The OpenLineage reference schemas; fails (never skips) when they are not there."""
    configured = os.environ.get("SLUICEGATE_OPENLINEAGE_SPEC")
    path = Path(configured) if configured else DEFAULT_OPENLINEAGE_SPEC
    if not (path / "OpenLineage.json").is_file() or not (path / "facets").is_dir():
        where = "SLUICEGATE_OPENLINEAGE_SPEC" if configured else "the default location"
        raise SchemaError(
            f"the OpenLineage JSON Schemas are missing: no OpenLineage.json and facets/ in "
            f"{path} ({where}); set SLUICEGATE_OPENLINEAGE_SPEC to the openlineage-spec folder"
        )
    return path


@dataclass(frozen=True)
class _Schemas:
    registry: Registry[Any]
    # (location, facet key) -> $id of every file that defines that facet there
    facets: Mapping[tuple[str, str], tuple[str, ...]]
    # $id -> locations of each of the file's facets, for picking by _schemaURL
    files: Mapping[str, Mapping[str, frozenset[str]]]
    sluicegate_ids: frozenset[str]


def _formats() -> FormatChecker:
    checker = FormatChecker()  # uuid, date, email, ... as jsonschema ships them

    @checker.checks("date-time", raises=ValueError)
    def _date_time(value: object) -> bool:
        if not isinstance(value, str):
            return True
        if not re.match(r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}", value):
            raise ValueError(f"{value!r} is not an RFC 3339 date-time")
        datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
        return True

    @checker.checks("uri", raises=ValueError)
    def _uri(value: object) -> bool:
        if not isinstance(value, str):
            return True
        if re.search(r"\s", value) or not re.match(r"^[A-Za-z][A-Za-z0-9+.-]*:", value):
            raise ValueError(f"{value!r} is not an absolute URI")
        urlsplit(value)
        return True

    return checker


FORMATS = _formats()


def _locations(document: Mapping[str, Any], schema: Mapping[str, Any]) -> frozenset[str]:
    """The OpenLineage bases reachable from ``schema`` through local refs, allOf and anyOf."""
    defs = document.get("$defs", {})
    found: set[str] = set()
    todo, seen = [schema], set()
    while todo:
        node = todo.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        ref = node.get("$ref", "")
        if ref.startswith(f"{OPENLINEAGE_ID}#/$defs/"):
            base = ref.rsplit("/", 1)[-1]
            if base in _BASES:
                found.add(_BASES[base])
        elif ref.startswith("#/$defs/"):
            todo.append(defs[ref.rsplit("/", 1)[-1]])
        for key in ("allOf", "anyOf", "oneOf"):
            todo.extend(node.get(key, ()))
    return frozenset(found)


def _facet_locations(document: Mapping[str, Any]) -> dict[str, frozenset[str]]:
    """Facet key -> where it may sit, read from the file's own schema."""
    everywhere = frozenset().union(
        *(_locations(document, d) for d in document.get("$defs", {}).values())
    )
    return {
        key: _locations(document, prop) or everywhere
        for key, prop in document.get("properties", {}).items()
    }


@functools.cache
def _load(spec: Path) -> _Schemas:
    paths = [spec / "OpenLineage.json", *sorted((spec / "facets").glob("*.json"))]
    ours = sorted(SLUICEGATE_SPEC.glob("*/*.json"))
    if not ours:
        raise SchemaError(f"no Sluicegate facet schema under {SLUICEGATE_SPEC}")
    resources: list[tuple[str, Resource[Any]]] = []
    facets: dict[tuple[str, str], list[str]] = {}
    files: dict[str, dict[str, frozenset[str]]] = {}
    sluicegate_ids: set[str] = set()
    for path in [*paths, *ours]:
        document = json.loads(path.read_text(encoding="utf-8"))
        schema_id = document["$id"]
        Draft202012Validator.check_schema(document)
        resources.append((schema_id, Resource.from_contents(document, DRAFT202012)))
        if path.parent == spec:
            continue  # OpenLineage.json: events, not facets
        if path in ours:
            sluicegate_ids.add(schema_id)
        files[schema_id] = _facet_locations(document)
        for key, where in files[schema_id].items():
            for location in where:
                facets.setdefault((location, key), []).append(schema_id)
    return _Schemas(
        registry=Registry().with_resources(resources),
        facets={k: tuple(v) for k, v in facets.items()},
        files=files,
        sluicegate_ids=frozenset(sluicegate_ids),
    )


def _schemas() -> _Schemas:
    return _load(spec_dir())


def _errors(schema_ref: str, instance: Any, where: str) -> list[str]:
    validator = Draft202012Validator(
        {"$ref": schema_ref}, registry=_schemas().registry, format_checker=FORMATS
    )
    out = []
    for error in sorted(validator.iter_errors(instance), key=lambda e: list(e.absolute_path)):
        # A oneOf (the event kinds) fails as a whole; best_match names the field in the branch
        # that came closest.
        leaf = best_match([error]) or error
        path = "".join(f"[{p!r}]" if isinstance(p, int) else f".{p}" for p in leaf.absolute_path)
        out.append(f"{where}{path}: {leaf.message}")
    return out


def _facet_errors(facets: Any, location: str, where: str) -> list[str]:
    if not isinstance(facets, Mapping):
        return []  # the event schema has said what is wrong with it
    schemas = _schemas()
    out: list[str] = []
    for key, facet in facets.items():
        if not isinstance(facet, Mapping):
            out.append(f"{where}.{key}: a facet must be an object")
            continue
        url = str(facet.get("_schemaURL", "")).split("#", 1)[0]
        if url in schemas.files and location in schemas.files[url].get(key, ()):
            ids: tuple[str, ...] = (url,)  # the exact file the facet names
        else:
            ids = schemas.facets.get((location, key), ())
            if any(i in schemas.sluicegate_ids for i in ids):
                out.append(f"{where}.{key}._schemaURL: {url!r} names no published schema")
                continue
        for schema_id in ids:
            out += _errors(schema_id, {key: facet}, where)
        out += _marquez_errors(key, facet, location, f"{where}.{key}")
        if key == "parent":
            out += _nested_parent_errors(facet, f"{where}.parent")
    return out


def _marquez_errors(key: str, facet: Mapping[str, Any], location: str, where: str) -> list[str]:
    """What Marquez refuses with a 422 although the spec allows it."""
    if location == "job" and key == "jobType" and not facet.get("jobType"):
        return [f"{where}: Marquez requires jobType in the jobType facet"]
    return []


def _nested_parent_errors(parent: Mapping[str, Any], where: str) -> list[str]:
    out: list[str] = []
    for part in ("run", "job"):
        node = parent.get(part)
        if isinstance(node, Mapping):
            out += _facet_errors(node.get("facets", {}), part, f"{where}.{part}.facets")
        root = parent.get("root")
        node = root.get(part) if isinstance(root, Mapping) else None
        if isinstance(node, Mapping):
            out += _facet_errors(node.get("facets", {}), part, f"{where}.root.{part}.facets")
    return out


def event_errors(event: Mapping[str, Any]) -> list[str]:
    """Every reason ``event`` is not a valid OpenLineage event, empty when it is."""
    out = _errors(OPENLINEAGE_ID, event, "event")
    if isinstance(event.get("run"), Mapping):
        out += _facet_errors(event["run"].get("facets", {}), "run", "event.run.facets")
    if isinstance(event.get("job"), Mapping):
        out += _facet_errors(event["job"].get("facets", {}), "job", "event.job.facets")
    for side, extra in (("inputs", "inputFacets"), ("outputs", "outputFacets")):
        datasets = event.get(side)
        for i, dataset in enumerate(datasets if isinstance(datasets, list) else ()):
            if isinstance(dataset, Mapping):
                where = f"event.{side}[{i}]"
                out += _facet_errors(dataset.get("facets", {}), "dataset", f"{where}.facets")
                out += _facet_errors(dataset.get(extra, {}), extra, f"{where}.{extra}")
    if isinstance(event.get("dataset"), Mapping):
        out += _facet_errors(event["dataset"].get("facets", {}), "dataset", "event.dataset.facets")
    return out


def validate_event(event: Mapping[str, Any]) -> None:
    """Raise :class:`SchemaError` listing every problem, unless ``event`` is valid."""
    errors = event_errors(event)
    if errors:
        raise SchemaError("invalid OpenLineage event:\n  " + "\n  ".join(errors))


def validate_facets(facets: Mapping[str, Any], location: str) -> None:
    """Raise :class:`SchemaError` unless each facet is valid where it sits (:data:`LOCATIONS`)."""
    if location not in LOCATIONS:
        raise ValueError(f"location {location!r} is not one of {', '.join(LOCATIONS)}")
    base = {
        "run": "RunFacet",
        "job": "JobFacet",
        "dataset": "DatasetFacet",
        "inputFacets": "InputDatasetFacet",
        "outputFacets": "OutputDatasetFacet",
    }[location]
    errors: list[str] = []
    for key, facet in facets.items():
        errors += _errors(f"{OPENLINEAGE_ID}#/$defs/{base}", facet, f"{location}.{key}")
    errors += _facet_errors(facets, location, location)
    if errors:
        raise SchemaError("invalid OpenLineage facets:\n  " + "\n  ".join(errors))


def locations_of(schema_file: str) -> frozenset[str]:
    """Where the facets of ``facets/<schema_file>.json`` may sit."""
    document = json.loads((spec_dir() / "facets" / f"{schema_file}.json").read_text("utf-8"))
    return frozenset().union(*_facet_locations(document).values())


def schema_file_for(schema_url: str) -> Path:
    """The repository file a Sluicegate ``_schemaURL`` names (its ``$id`` is the URL), at
    whichever tag (or, for 1-0-0, branch) the URL pins."""
    prefix = "https://raw.githubusercontent.com/sluicegate/sluicegate/"
    base = schema_url.split("#", 1)[0]
    ref, _, path = base.removeprefix(prefix).partition("/")
    if not base.startswith(prefix) or not ref or not path:
        raise SchemaError(f"{schema_url!r} is not a Sluicegate schema URL")
    return REPO / path
