"""Dagster assets named as datasets, through the core's one conversion (:mod:`sluicegate.datasets`).

This module only turns what Dagster holds about an asset (its key and its spec's metadata) into
a declaration :func:`sluicegate.datasets.to_asset` takes: a URI, or ``{namespace, name}``. The
first of these the asset has names it:

1. ``dagster/table_name`` (or ``dagster/relation_identifier``) metadata in the namespace of the
   ``sluicegate/namespace`` metadata: ``crm.public.customers`` in ``postgres://prod:5432``;
2. ``dagster/uri`` metadata: ``postgres://prod:5432/crm/public/customers``, ``s3://bucket/key``;
3. ``dagster/table_name`` in the resource's ``asset_namespace``;
4. the asset key in the namespace of the ``sluicegate/namespace`` metadata: the key
   ``crm/public/customers`` in ``postgres://prod:5432`` is ``crm.public.customers``;
5. the asset key as is (``crm/customers``) in the resource's ``asset_namespace``.

What the core cannot name raises :class:`~sluicegate.exceptions.DatasetError` naming the asset
and the metadata key, never a guess: a dataset named otherwise would be one that no policy rule
classifies. ``sluicegate/classifications`` metadata (``["pii"]`` or ``"pii,prod"``) adds
classifications.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from dagster import AssetKey, AssetSpec, OpExecutionContext

__all__ = [
    "CLASSIFICATIONS_METADATA",
    "NAMESPACE_METADATA",
    "asset_dataset",
    "given_datasets",
    "upstream_datasets",
]

CLASSIFICATIONS_METADATA = "sluicegate/classifications"
NAMESPACE_METADATA = "sluicegate/namespace"
TABLE_NAME_METADATA = "dagster/table_name"
#: Dagster's other key for a table name (``TableMetadataSet.relation_identifier``).
RELATION_METADATA = "dagster/relation_identifier"
#: Dagster's ``UriMetadataSet``: where the asset lives (``s3://bucket/key``).
URI_METADATA = "dagster/uri"


def given_datasets(items: Sequence[Any], where: str) -> list[dict[str, Any]]:
    """The gate's own ``inputs=``/``outputs=`` (URIs, dicts, OpenLineage datasets), named.

    :raises DatasetError: one cannot be named.
    """
    from sluicegate.datasets import to_assets

    return to_assets(items, where=where)


def asset_dataset(key: AssetKey, spec: AssetSpec | None, namespace: str) -> dict[str, Any]:
    """The asset ``key`` as the API's dataset, named from its spec's metadata (see the
    module's docstring); ``namespace`` is the resource's ``asset_namespace``.

    :raises DatasetError: its metadata names no dataset.
    """
    from sluicegate.datasets import to_asset

    metadata = spec.metadata if spec is not None else {}
    table = _plain(metadata, TABLE_NAME_METADATA, RELATION_METADATA)
    uri = _plain(metadata, URI_METADATA)
    own = _plain(metadata, NAMESPACE_METADATA)
    asset = f"asset {key.to_user_string()!r}"
    # A dagster/uri is checked even where a table name wins: a bad one fails the step.
    by_uri = None if uri is None else to_asset(uri, where=f"{asset} {URI_METADATA}")
    if table is not None and own is not None:
        named = to_asset({"namespace": own, "name": table}, where=asset)
    elif by_uri is not None:
        named = by_uri
    elif table is not None:
        named = to_asset({"namespace": namespace, "name": table}, where=asset)
    else:
        named = to_asset({"namespace": own or namespace, "name": "/".join(key.path)}, where=asset)
    out: dict[str, Any] = {"namespace": named["namespace"], "name": named["name"]}
    labels = _classifications(metadata)
    if labels:
        out["classifications"] = labels
    return out


def upstream_datasets(
    ctx: OpExecutionContext, specs: Sequence[AssetSpec], namespace: str
) -> list[dict[str, Any]]:
    """The upstream assets of the step's assets, named as the upstream assets name themselves
    when this code location defines them (their table name and namespace metadata), else by
    their key.

    :raises DatasetError: an upstream's metadata names no dataset.
    """
    seen: dict[AssetKey, None] = {}
    for spec in specs:
        for dep in spec.deps:
            seen.setdefault(dep.asset_key)
    own = {spec.key for spec in specs}
    return [asset_dataset(key, _known_spec(ctx, key), namespace) for key in seen if key not in own]


def _plain(metadata: Mapping[str, Any], *keys: str) -> Any:
    """The plain value of the first of ``keys`` in ``metadata`` (None when none is there): a
    value that is there but empty or not text is returned as is, so that naming refuses it."""
    for k in keys:
        if k in metadata:
            value = getattr(metadata[k], "value", metadata[k])
            return str(value) if isinstance(value, (int, float)) else value
    return None


def _classifications(metadata: Mapping[str, Any]) -> list[str]:
    given = _plain(metadata, CLASSIFICATIONS_METADATA)
    if isinstance(given, str):
        given = given.split(",")
    return [str(c).strip() for c in (given or []) if str(c).strip()]


def _known_spec(ctx: OpExecutionContext, key: AssetKey) -> AssetSpec | None:
    """The spec of an upstream asset if the job holds its definition, else None."""
    try:
        graph = ctx.get_step_execution_context().job_def.asset_layer.asset_graph
        if graph.has(key):
            return graph.get(key).to_asset_spec()
    except Exception:  # an upstream from another code location: named by its key
        return None
    return None
