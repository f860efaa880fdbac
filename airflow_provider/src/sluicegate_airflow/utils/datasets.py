"""A gate's inlets and outlets (or ``inputs``/``outputs``) as the datasets its action names.

Named by the core's one conversion, :func:`sluicegate.datasets.to_asset` (the OpenLineage
naming spec, as Airflow's OpenLineage provider names the same datasets in the task's own
events); this module only turns Airflow's own objects into what it takes:

- an ``Asset`` (or ``Asset.ref(uri=...)``): the name Airflow's OpenLineage provider gives it
  when the provider is active in this process and has a converter for its scheme (so the gate
  and the task's own lineage events name it alike), else its URI:
  ``Asset("postgres://prod:5432/crm/public/customers")`` is ``crm.public.customers`` in
  ``postgres://prod:5432``;
- the lineage entities ``File`` (its URL) and ``Table`` (``database.name`` in its cluster);
- an OpenLineage ``Dataset``, a dict, a URI string: as they are;
- an ``AssetAlias``, or an ``Asset`` named only by its name: nothing names their datasets
  before the task has run, so the task fails, without retrying, saying how to declare them.

Anything that cannot be named fails the task the same way (a URI of a scheme that neither the
core nor an installed OpenLineage provider can name too): an unnamed dataset would reach the
policy as one that no rule classifies, and the default could let the step through.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

from airflow.sdk import Asset, AssetAlias
from airflow.sdk.exceptions import AirflowFailException

__all__ = ["assets_of"]

# Loaded by the OpenLineage provider's listener when OpenLineage is configured for this process.
_PROVIDER_ACTIVE = "airflow.providers.openlineage.plugins.adapter"


def assets_of(items: Sequence[Any], *, where: str) -> list[dict[str, Any]]:
    """The API's assets for inlets/outlets or a gate's ``inputs``/``outputs``.

    :param where: what they are (``inlets``, ``inputs``), for the error message.
    :raises AirflowFailException: one of them cannot be named (no retry: a retry would not name
        it either).
    """
    from sluicegate.exceptions import DatasetError  # the core's, imported when a gate asks

    try:
        return [_asset(item, f"{where}[{i}]") for i, item in enumerate(items)]
    except DatasetError as err:
        raise AirflowFailException(f"Sluicegate: {err}") from None


def _asset(item: Any, where: str) -> dict[str, Any]:
    from airflow.sdk.definitions.asset import AssetNameRef, AssetUriRef

    from sluicegate.datasets import to_asset
    from sluicegate.exceptions import DatasetError

    if isinstance(item, AssetAlias):
        raise DatasetError(
            f"{where}: AssetAlias({item.name!r}) names no dataset until the task has run, so "
            "the gate cannot ask about it; declare the datasets it stands for as Assets, or "
            "pass inputs=/outputs= to the gate"
        )
    if isinstance(item, AssetNameRef):
        raise DatasetError(
            f"{where}: Asset.ref(name={item.name!r}) names no dataset here; declare the Asset "
            "with its URI, or pass inputs=/outputs= to the gate"
        )
    if isinstance(item, AssetUriRef):
        item = Asset(uri=item.uri)
    if isinstance(item, Asset):
        return _from_asset(item, where)
    entity = _lineage_entity(item)
    return to_asset(entity if entity is not None else item, where=where)


def _from_asset(asset: Asset, where: str) -> dict[str, Any]:
    from sluicegate.datasets import to_asset
    from sluicegate.exceptions import DatasetError

    if "://" not in asset.uri:
        raise DatasetError(
            f"{where}: Asset {asset.uri!r} has no URI, only a name, so nothing says where its "
            "data lives; give it a URI (Asset('postgres://host:5432/db/schema/table')) or pass "
            "inputs=/outputs= to the gate"
        )
    if _PROVIDER_ACTIVE in sys.modules and (named := _translated(asset)):
        return named
    try:
        return to_asset(asset.uri, where=where)
    except DatasetError:
        # A scheme the core has no rule for may have a converter in an installed provider:
        # importing the OpenLineage provider costs about a second, paid only here.
        if named := _translated(asset):
            return named
        raise


def _translated(asset: Asset) -> dict[str, Any] | None:
    """The OpenLineage provider's name for ``asset``, through the core's conversion (None: no
    provider, or no converter for its scheme)."""
    try:
        from airflow.providers.common.compat.openlineage.utils.utils import (
            translate_airflow_asset,
        )
    except ImportError:
        return None
    from sluicegate.datasets import to_asset

    dataset = translate_airflow_asset(asset, None)
    if dataset is None:
        return None
    return to_asset({"namespace": dataset.namespace, "name": dataset.name})


def _lineage_entity(item: Any) -> Any:
    """Airflow's lineage ``File`` as its URL and ``Table`` as a dataset dict, as the OpenLineage
    provider reads them; None for anything else."""
    try:
        from airflow.providers.common.compat.lineage.entities import File, Table
    except ImportError:
        return None
    if isinstance(item, File):
        return item.url
    if isinstance(item, Table):
        return {"namespace": item.cluster, "name": f"{item.database}.{item.name}"}
    return None
