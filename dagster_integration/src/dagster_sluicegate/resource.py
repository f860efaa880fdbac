"""``SluicegateResource``: the Sluicegate server a Dagster code location talks to.

::

    from dagster import Definitions, EnvVar
    from dagster_sluicegate import SluicegateResource

    defs = Definitions(
        assets=[...],
        resources={"sluicegate": SluicegateResource(
            server_url="https://sluicegate.example.com",
            token=EnvVar("SLUICEGATE_TOKEN"),    # a request-scoped token, never in code
        )},
    )
"""

from __future__ import annotations

from dagster import ConfigurableResource
from pydantic import Field

from sluicegate.client import SluicegateClient

__all__ = ["SluicegateResource"]


class SluicegateResource(ConfigurableResource):  # type: ignore[type-arg]
    """Where gates are opened, with which token, and how long a step may wait in place."""

    server_url: str = Field(
        description="The Sluicegate server, e.g. https://sluicegate.example.com"
    )
    token: str = Field(
        description="A request-scoped token (sluicegate token create --scope request); "
        "pass EnvVar('SLUICEGATE_TOKEN') so it stays out of code and run config"
    )
    max_wait_seconds: float = Field(
        600.0,
        gt=0,
        description="How long a step waiting in place (wait='step') long-polls before it "
        "fails (retryable: a retry reattaches to the same request)",
    )
    lineage_namespace: str = Field(
        "dagster",
        description="OpenLineage namespace of the Dagster runs the gates name as their parent",
    )
    asset_namespace: str = Field(
        "dagster",
        description="Dataset namespace of assets that do not set 'sluicegate/namespace' metadata",
    )
    timeout_seconds: float = Field(10.0, gt=0, description="Timeout of each HTTP call")

    def get_client(self) -> SluicegateClient:
        """A blocking client of the server (close it, or use it as a context manager)."""
        return SluicegateClient(
            self.server_url.strip().rstrip("/"), self.token, timeout=self.timeout_seconds
        )
