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

import time
from typing import TYPE_CHECKING, ClassVar

from prefect.blocks.core import Block
from pydantic import Field, SecretStr, field_validator

if TYPE_CHECKING:  # the client (the core's models) loads when a gate first asks
    from sluicegate.client import AsyncSluicegateClient, SluicegateClient

__all__ = ["BLOCK_CACHE_SECONDS", "SluicegateConfig"]

#: How long a block a gate named (``config="sluicegate-prod"``) serves the gates of a process
#: before it is read from Prefect's API again: an edited, renamed or deleted block reaches a
#: flow run that is already running within this time. Reading it costs a round trip to
#: Prefect's API (some 58 ms measured) that every gate paid.
BLOCK_CACHE_SECONDS = 60.0

#: Blocks read by name in this process: name -> (time read, block).
_LOADED: dict[str, tuple[float, SluicegateConfig]] = {}


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
        from sluicegate.client import SluicegateClient

        return SluicegateClient(self.server_url, self.token.get_secret_value())

    def get_async_client(self) -> AsyncSluicegateClient:
        """A non-blocking client of the server (``await client.aclose()`` when done)."""
        from sluicegate.client import AsyncSluicegateClient

        return AsyncSluicegateClient(self.server_url, self.token.get_secret_value())

    @classmethod
    def load_cached(cls, name: str) -> SluicegateConfig:
        """The block saved as ``name``, read from Prefect's API at most once per
        :data:`BLOCK_CACHE_SECONDS` in this process (from sync code)."""
        block = _cached(name)
        if block is None:
            # _sync: Prefect's dispatch would hand back a coroutine inside a running loop
            loaded = cls.load(name, _sync=True)  # type: ignore[call-arg]
            assert isinstance(loaded, SluicegateConfig)
            block = loaded
            _LOADED[name] = (time.monotonic(), block)
        return block

    @classmethod
    async def aload_cached(cls, name: str) -> SluicegateConfig:
        """:meth:`load_cached`, awaited."""
        block = _cached(name)
        if block is None:
            block = await cls.aload(name)
            _LOADED[name] = (time.monotonic(), block)
        return block


def _cached(name: str) -> SluicegateConfig | None:
    hit = _LOADED.get(name)
    if hit is None or time.monotonic() - hit[0] > BLOCK_CACHE_SECONDS:
        return None
    return hit[1]
