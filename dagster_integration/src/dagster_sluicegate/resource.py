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

    # Defaults are given as `default=`: Dagster declares its config classes a PEP 681
    # dataclass_transform, and a type checker reads a field specifier's default only from
    # that keyword; a positional default made mypy call every such field required.

    server_url: str = Field(
        description="The Sluicegate server, e.g. https://sluicegate.example.com"
    )
    token: str = Field(
        description="A request-scoped token (sluicegate token create --scope request); "
        "pass EnvVar('SLUICEGATE_TOKEN') so it stays out of code and run config"
    )
    max_wait_seconds: float = Field(
        default=600.0,
        gt=0,
        description="How long a step waiting in place (wait='step') long-polls before it "
        "fails (retryable: a retry reattaches to the same request)",
    )
    lineage_namespace: str | None = Field(
        default=None,
        description="OpenLineage namespace of the Dagster runs the gates name as their parent; "
        "unset: dagster-openlineage's (OPENLINEAGE_NAMESPACE, else 'default'; for an op "
        "job's run, the run's repository name first). Set it to the 'namespace' of "
        "dagster-openlineage's event log storage when instance.yaml sets one",
    )
    asset_namespace: str = Field(
        default="dagster",
        description="Dataset namespace of assets that do not set 'sluicegate/namespace' metadata",
    )
    timeout_seconds: float = Field(default=10.0, gt=0, description="Timeout of each HTTP call")

    def get_client(self) -> SluicegateClient:
        """A blocking client of the server (close it, or use it as a context manager)."""
        return SluicegateClient(
            self.server_url.strip().rstrip("/"), self.token, timeout=self.timeout_seconds
        )
