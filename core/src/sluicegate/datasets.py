"""Dataset declarations named the OpenLineage way: the one conversion every adapter uses.

A pipeline declares what a step reads and writes in its orchestrator's terms: an Airflow
``Asset("postgres://prod:5432/crm/public/customers")``, an OpenLineage ``Dataset``, a Prefect
asset key, a Dagster ``dagster/uri``, a dict, a URI string. The policy knows datasets by their
OpenLineage names (https://openlineage.io/docs/spec/naming): that table is
``crm.public.customers`` in the namespace ``postgres://prod:5432``. A declaration named any
other way reaches the policy as a dataset that no ``classify`` rule matches, and the policy's
default may let it through; so what cannot be named here raises
:class:`~sluicegate.exceptions.DatasetError`, never a guess.

Accepted declarations:

- a URI string, or a mapping ``{"uri": ..., "classifications": [...]}``;
- a mapping ``{"namespace": ..., "name": ..., "classifications": [...]}``, or an object with
  ``namespace`` and ``name`` attributes (openlineage-python's ``Dataset``, ``InputDataset``,
  ``OutputDataset`` and its legacy classes): a namespace of a scheme below is normalized and
  its name checked as a URI's would be; any other namespace is kept as given;
- an object with a ``uri`` attribute (an Airflow ``Asset``).

URIs, by scheme (``host:port`` gets the default port when it has none; credentials in a URI
are dropped, never part of a name)::

    postgres, postgresql  postgres://host:5432        database.schema.table
    mysql                 mysql://host:3306           database.table
    mssql                 mssql://host:1433           database.schema.table
    sqlserver             sqlserver://host:1433       [database.]schema.table
    redshift              redshift://cluster.region:5439  database.schema.table
    snowflake             snowflake://org-account     database.schema.table
    trino                 trino://host:8080           catalog.schema.table
    oracle                oracle://host:1521          service.schema.table
    db2                   db2://host:50000            database.schema.table
    teradata              teradata://host:1025        database.table
    hive                  hive://host:10000           database.table
    cassandra             cassandra://host:9042       keyspace.table
    awsathena             awsathena://athena.region.amazonaws.com  catalog.database.table
    bigquery              bigquery                    project.dataset.table
    s3, s3a, s3n          s3://bucket                 object key
    gs, gcs               gs://bucket                 object key
    abfss                 abfss://container@account.dfs.core.windows.net  path
    wasbs                 wasbs://container@account.blob.core.windows.net  object key
    azurekusto            azurekusto://host           database/table
    hdfs                  hdfs://namenode:8020        /absolute/path
    dbfs                  dbfs://workspace            /absolute/path
    file                  file (file://host remote)   /absolute/path
    kafka                 kafka://host:9092           topic

A table's parts come either as path segments (``/crm/public/customers``, Airflow's asset URIs)
or as one dotted segment (``/crm.public.customers``, OpenLineage's URI form). Object keys lose
their surrounding slashes (as Airflow's S3 and GCS converters do); file system paths keep
their leading one (as OpenLineage's ``file`` and ``hdfs`` names do).

No other scheme is named: the spec's generic rule (``scheme://authority`` + path) gives the
name a producer of that scheme would emit only where that producer uses the path as is, and
for a scheme not listed nothing here knows whether it does.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any
from urllib.parse import SplitResult, quote, unquote, urlsplit

from sluicegate.exceptions import DatasetError

__all__ = ["SCHEMES", "name_in", "name_uri", "to_asset", "to_assets"]

#: How to declare a dataset instead, appended to every error.
_HOW = (
    "declare it as a URI of a known scheme (postgres://host:5432/db/schema/table, "
    "s3://bucket/key, ...) or as {'namespace': ..., 'name': ...} with its OpenLineage names"
)
_KEYS = frozenset({"namespace", "name", "uri", "classifications"})
# user:password@ in a URI: the password is never repeated in an error message
_PASSWORD = re.compile(r"(://[^/@:\s]*):[^/@\s]*@")


class _Unnamable(Exception):
    """Why a value cannot be named (wrapped into a DatasetError naming the value)."""


# Plain classes, not dataclasses: building a dataclass costs about a millisecond at import,
# and every task process of an orchestrator imports this.
class _Table:
    """A warehouse: namespace ``scheme://host:port``, name the dotted parts."""

    __slots__ = ("layout", "optional_first", "port", "scheme")

    def __init__(
        self, scheme: str, layout: str, port: int | None, *, optional_first: bool = False
    ) -> None:
        self.scheme = scheme
        self.layout = layout  # e.g. "database.schema.table": as many parts as it has
        self.port = port
        self.optional_first = optional_first  # sqlserver: the database may be left out

    def __call__(self, parts: SplitResult) -> tuple[str, str]:
        counts = {self.layout.count(".") + 1}
        if self.optional_first:
            counts.add(self.layout.count("."))
        names = _table_parts(_segments(parts.path), counts, self.layout)
        return f"{self.scheme}://{_authority(parts, self.port)}", ".".join(names)


class _Objects:
    """A blob store: namespace ``scheme://bucket``, name the object key."""

    __slots__ = ("container", "scheme")

    def __init__(self, scheme: str, *, container: bool = False) -> None:
        self.scheme = scheme
        self.container = container  # abfss/wasbs: the authority is container@account

    def __call__(self, parts: SplitResult) -> tuple[str, str]:
        host = _hostname(parts)
        if self.container:
            if not parts.username:
                raise _Unnamable(f"its host must be container@account ({self.scheme})")
            host = f"{parts.username}@{host}"
        key = unquote(parts.path).strip("/")
        if not key:
            raise _Unnamable("it names no object (the key is empty)")
        return f"{self.scheme}://{host}", key


class _Paths:
    """A file system: namespace ``scheme://host[:port]``, name the absolute path."""

    __slots__ = ("port", "scheme")

    def __init__(self, scheme: str, port: int | None) -> None:
        self.scheme = scheme
        self.port = port

    def __call__(self, parts: SplitResult) -> tuple[str, str]:
        return f"{self.scheme}://{_authority(parts, self.port)}", _path(parts)


def _file(parts: SplitResult) -> tuple[str, str]:
    path = _path(parts)
    host = (parts.hostname or "").lower()
    return (f"file://{host}", path) if host and host != "localhost" else ("file", path)


def _kafka(parts: SplitResult) -> tuple[str, str]:
    segments = _segments(parts.path)
    if len(segments) != 1 or not segments[0].strip():
        raise _Unnamable("a kafka URI names one topic: kafka://host:9092/topic")
    return f"kafka://{_authority(parts, 9092)}", segments[0]


def _bigquery(parts: SplitResult) -> tuple[str, str]:
    # bigquery://project/dataset/table (Airflow's asset URIs), bigquery:project.dataset.table
    # (the spec's URI form), bigquery://project.dataset.table: all the same table.
    items = ([unquote(parts.netloc)] if parts.netloc else []) + _segments(parts.path)
    return "bigquery", ".".join(_table_parts(items, {3}, "project.dataset.table"))


_Rule = Callable[[SplitResult], tuple[str, str]]

_RULES: dict[str, _Rule] = {
    "postgres": _Table("postgres", "database.schema.table", 5432),
    "postgresql": _Table("postgres", "database.schema.table", 5432),
    "mysql": _Table("mysql", "database.table", 3306),
    "mssql": _Table("mssql", "database.schema.table", 1433),
    "sqlserver": _Table("sqlserver", "database.schema.table", 1433, optional_first=True),
    "redshift": _Table("redshift", "database.schema.table", 5439),
    "snowflake": _Table("snowflake", "database.schema.table", None),
    "trino": _Table("trino", "catalog.schema.table", 8080),
    "oracle": _Table("oracle", "service.schema.table", 1521),
    "db2": _Table("db2", "database.schema.table", 50000),
    "teradata": _Table("teradata", "database.table", 1025),
    "hive": _Table("hive", "database.table", 10000),
    "cassandra": _Table("cassandra", "keyspace.table", 9042),
    "awsathena": _Table("awsathena", "catalog.database.table", None),
    "bigquery": _bigquery,
    "s3": _Objects("s3"),
    "s3a": _Objects("s3"),
    "s3n": _Objects("s3"),
    "gs": _Objects("gs"),
    "gcs": _Objects("gs"),
    "abfss": _Objects("abfss", container=True),
    "wasbs": _Objects("wasbs", container=True),
    "azurekusto": _Objects("azurekusto"),
    "hdfs": _Paths("hdfs", 8020),
    "dbfs": _Paths("dbfs", None),
    "file": _file,
    "kafka": _kafka,
}

#: The URI schemes that :func:`name_uri` names.
SCHEMES: frozenset[str] = frozenset(_RULES)


def _hostname(parts: SplitResult) -> str:
    try:
        host = parts.hostname  # lowercased, credentials and port dropped
    except ValueError as err:
        raise _Unnamable(f"its host is not valid ({err})") from err
    if not host:
        raise _Unnamable("it has no host")
    return f"[{host}]" if ":" in host else host


def _authority(parts: SplitResult, default_port: int | None) -> str:
    host = _hostname(parts)
    try:
        port = parts.port
    except ValueError as err:
        raise _Unnamable(f"its port is not valid ({err})") from err
    port = port if port is not None else default_port
    return f"{host}:{port}" if port is not None else host


def _segments(path: str) -> list[str]:
    """The path's segments, percent-decoded ("" and "/" have none)."""
    path = path[1:] if path.startswith("/") else path
    return [unquote(s) for s in path.split("/")] if path else []


def _table_parts(segments: list[str], counts: set[int], layout: str) -> list[str]:
    if len(segments) == 1:
        names = segments[0].split(".")
    else:
        if any("." in s for s in segments):
            # db/sch.ema/t: is it db.sch.ema.t or a table named "ema"? Neither is safe to guess.
            raise _Unnamable(f"a path segment holds a dot, so its {layout} is ambiguous")
        names = segments
    if len(names) not in counts or any(not n.strip() for n in names):
        raise _Unnamable(f"it must name {layout} (as /{layout.replace('.', '/')} or /{layout})")
    return names


def _path(parts: SplitResult) -> str:
    path = unquote(parts.path)
    if not path.startswith("/"):
        raise _Unnamable("it needs an absolute path")
    path = "/" + path.strip("/")
    if path == "/":
        raise _Unnamable("it names no path")
    return path


def _name_uri(uri: str) -> tuple[str, str]:
    text = uri.strip()
    try:
        parts = urlsplit(text)
    except ValueError as err:
        raise _Unnamable(f"it is not a valid URI ({err})") from err
    scheme = parts.scheme.lower()
    if not scheme:
        raise _Unnamable("it has no scheme, so nothing says where the data lives")
    rule = _RULES.get(scheme)
    if rule is None:
        raise _Unnamable(f"no OpenLineage naming rule is known for the scheme {scheme!r}")
    return rule(parts)


def _name_in(namespace: str, name: str) -> tuple[str, str]:
    namespace, name = namespace.strip(), name.strip()
    if not namespace or not name:
        raise _Unnamable("its namespace and name must not be empty")
    lowered = namespace.lower()
    if lowered == "file":
        if not name.startswith("/"):
            raise _Unnamable("a name in the namespace file is an absolute path")
        return _name_uri("file://" + quote(name))
    if lowered in ("bigquery", "bigquery:", "bigquery://"):
        return _name_uri("bigquery:" + quote(name, safe="/"))
    scheme, sep, _ = namespace.partition("://")
    if not sep or scheme.lower() not in _RULES:
        return namespace, name  # a namespace no rule knows: the pair is its own name
    try:
        rest = urlsplit(namespace)
    except ValueError as err:
        raise _Unnamable(f"its namespace is not a valid URI ({err})") from err
    if rest.path.strip("/") or rest.query or rest.fragment:
        raise _Unnamable(f"the namespace {namespace!r} holds more than scheme://authority")
    return _name_uri(f"{namespace.rstrip('/')}/{quote(name.lstrip('/'), safe='/')}")


def _shown(value: Any) -> str:
    text = value if isinstance(value, str) else repr(value)
    text = _PASSWORD.sub(r"\1:***@", text)
    return repr(text) if isinstance(value, str) else text[:300]


def _fail(value: Any, reason: str, where: str | None) -> DatasetError:
    prefix = f"{where}: " if where else ""
    return DatasetError(f"{prefix}cannot name {_shown(value)}: {reason}; {_HOW}")


def name_uri(uri: str) -> tuple[str, str]:
    """``(namespace, name)`` of a dataset URI (see the module's docstring for the schemes).

    :raises DatasetError: no scheme, a scheme no rule knows, or a URI that does not name one
        dataset of its scheme (a table without its schema, an empty object key).
    """
    try:
        return _name_uri(uri)
    except _Unnamable as err:
        raise _fail(uri, str(err), None) from None


def name_in(namespace: str, name: str) -> tuple[str, str]:
    """``(namespace, name)`` normalized: a namespace of a known scheme as a URI of that scheme
    would be named (``postgresql://prod`` + ``crm/public/customers`` is ``postgres://prod:5432``
    + ``crm.public.customers``); any other pair as given.

    :raises DatasetError: an empty namespace or name, or a name that does not fit its scheme.
    """
    try:
        return _name_in(namespace, name)
    except _Unnamable as err:
        raise _fail({"namespace": namespace, "name": name}, str(err), None) from None


def _from_mapping(value: Mapping[Any, Any]) -> tuple[str, str]:
    unknown = set(value) - _KEYS
    if unknown:
        raise _Unnamable(f"unknown keys {sorted(map(str, unknown))}")
    if "uri" in value:
        if "namespace" in value or "name" in value:
            raise _Unnamable("give either uri, or namespace and name, not both")
        if not isinstance(value["uri"], str):
            raise _Unnamable("its uri is not a string")
        return _name_uri(value["uri"])
    namespace, name = value.get("namespace"), value.get("name")
    if not isinstance(namespace, str) or not isinstance(name, str):
        raise _Unnamable("it needs a namespace and a name (strings), or a uri")
    return _name_in(namespace, name)


def to_asset(value: Any, *, where: str | None = None) -> dict[str, Any]:
    """The API's asset ``{"namespace", "name"[, "classifications"]}`` for one declaration.

    :param value: a URI, a mapping, or an object with ``namespace``/``name`` or ``uri``
        attributes (see the module's docstring).
    :param where: where it was declared (``inlets[0]``), for the error message.
    :raises DatasetError: it cannot be named.
    """
    classifications = None
    try:
        if isinstance(value, str):
            namespace, name = _name_uri(value)
        elif isinstance(value, Mapping):
            namespace, name = _from_mapping(value)
            classifications = value.get("classifications")
        elif isinstance(getattr(value, "namespace", None), str) and isinstance(
            getattr(value, "name", None), str
        ):
            namespace, name = _name_in(value.namespace, value.name)
        elif isinstance(getattr(value, "uri", None), str):
            namespace, name = _name_uri(value.uri)
        else:
            raise _Unnamable(
                f"{type(value).__name__!r} is neither a URI, a mapping, nor an object with "
                "namespace and name, or a uri"
            )
    except _Unnamable as err:
        raise _fail(value, str(err), where) from None
    out: dict[str, Any] = {"namespace": namespace, "name": name}
    if classifications is not None:  # checked by the Action model, as any action's are
        out["classifications"] = (
            list(classifications)
            if isinstance(classifications, (list, tuple, set, frozenset))
            else classifications
        )
    return out


def to_assets(values: Iterable[Any] | None, *, where: str = "datasets") -> list[dict[str, Any]]:
    """:func:`to_asset` of each declaration; errors name it as ``where[i]``. A lone URI or
    mapping counts as a list of one."""
    if values is None:
        return []
    if isinstance(values, (str, Mapping)):
        return [to_asset(values, where=where)]
    return [to_asset(v, where=f"{where}[{i}]") for i, v in enumerate(values)]
