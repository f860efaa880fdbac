"""``SluicegateConfig``: where the Sluicegate server is and the token a flow asks it with.

Save one once (in code, or in Prefect's UI after ``prefect block register -m
prefect_sluicegate``) and name it in the gate::

    SluicegateConfig(server_url="https://sluicegate.example.com",
                     token="sgreq_...").save("sluicegate-prod")

    approval_gate("export", ..., config="sluicegate-prod")

The token is a ``request``-scoped one (``sluicegate token create --principal prefect-prod
--scope request``): it can open gates and read them, never decide.
"""

from __future__ import annotations

from typing import ClassVar

from prefect.blocks.core import Block
from pydantic import Field, SecretStr, field_validator

from sluicegate.client import AsyncSluicegateClient, SluicegateClient

__all__ = ["SluicegateConfig"]


class SluicegateConfig(Block):
    """The Sluicegate server a flow's approval gates talk to."""

    _block_type_name: ClassVar[str] = "Sluicegate Config"
    _description: ClassVar[str] = (
        "The Sluicegate approval server and a request-scoped token for its API."
    )

    server_url: str = Field(
        description="Where the Sluicegate server is, e.g. https://sluicegate.example.com"
    )
    token: SecretStr = Field(description="A request-scoped Sluicegate API token")

    @field_validator("server_url")
    @classmethod
    def _url(cls, value: str) -> str:
        value = value.strip().rstrip("/")
        if not value.startswith(("http://", "https://")):
            raise ValueError(f"server_url {value!r} must start with http:// or https://")
        return value

    def get_client(self) -> SluicegateClient:
        """A blocking client of the server (close it when done)."""
        return SluicegateClient(self.server_url, self.token.get_secret_value())

    def get_async_client(self) -> AsyncSluicegateClient:
        """A non-blocking client of the server (``await client.aclose()`` when done)."""
        return AsyncSluicegateClient(self.server_url, self.token.get_secret_value())
