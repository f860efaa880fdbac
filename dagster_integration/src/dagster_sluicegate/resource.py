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

import os
import threading
from typing import TYPE_CHECKING

from dagster import ConfigurableResource
from pydantic import Field

if TYPE_CHECKING:  # the client (httpx, the core's models) loads when a gate first asks
    from sluicegate.client import SluicegateClient

__all__ = ["SluicegateResource"]

#: The clients the gates of this process share, by (process, URL, token, timeout).
_SHARED: dict[tuple[int, str, str, float], SluicegateClient] = {}
_SHARED_LOCK = threading.Lock()


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
        """A new blocking client of the server (close it, or use it as a context manager)."""
        from sluicegate.client import SluicegateClient

        return SluicegateClient(
            self.server_url.strip().rstrip("/"), self.token, timeout=self.timeout_seconds
        )

    def shared_client(self) -> SluicegateClient:
        """The client every gate of this process asks through with this configuration (do
        not close it): one connection kept alive across the gates of a run's steps, where a
        client per gate paid a new connection each time. Keyed by the process too, so a
        forked process never shares its parent's sockets; httpx's pool is thread-safe."""
        key = (os.getpid(), self.server_url, self.token, self.timeout_seconds)
        with _SHARED_LOCK:
            client = _SHARED.get(key)
            if client is None:
                client = _SHARED[key] = self.get_client()
        return client
