"""What the Dagster gate tests share: the test definitions (``gated_defs.py``, imported once
the suite's ``env`` has set the environment they read), ``materialize`` with their Sluicegate
resource, and the metadata each asset of a result was materialized with.
"""

from __future__ import annotations

from typing import Any


def defs() -> Any:
    from tests.dagster import gated_defs

    return gated_defs


def materialize(assets: list[Any], **kw: Any) -> Any:
    from dagster import materialize as run

    return run(assets, resources={"sluicegate": defs().resource()}, **kw)


def materialized(result: Any) -> dict[str, dict[str, Any]]:
    return {
        e.asset_key.to_user_string(): {k: v.value for k, v in e.materialization.metadata.items()}
        for e in result.get_asset_materialization_events()
    }
