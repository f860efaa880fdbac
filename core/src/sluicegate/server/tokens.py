"""Bearer token lookups, remembered briefly: most API calls then touch no database for auth."""

from __future__ import annotations

import time

import anyio

from sluicegate.store import Store, TokenInfo

__all__ = ["TOKEN_CACHE_SECONDS", "TokenCache"]

#: How long a token lookup is trusted: a revoked token keeps working at most this long.
TOKEN_CACHE_SECONDS = 10.0


class TokenCache:
    """Token lookups, remembered briefly: most API calls then touch no database for auth."""

    def __init__(self, store: Store, ttl: float = TOKEN_CACHE_SECONDS, size: int = 10_000) -> None:
        self.store = store
        self.ttl = ttl
        self.size = size
        self._seen: dict[str, tuple[float, TokenInfo | None]] = {}

    async def lookup(self, token: str) -> TokenInfo | None:
        """The token's principal and scope, or None for an unknown, revoked or expired token."""
        # Keyed by the token itself (hashing it was a measurable share of a status read): it
        # lives only in this process's memory, which holds it during the request anyway.
        now = time.monotonic()
        hit = self._seen.get(token)
        if hit is not None and now - hit[0] < self.ttl:
            info = hit[1]
            # An expiry is known in advance: it holds to the second, cached or not.
            if info is not None and info.expires_at is not None and info.expired():
                return None
            return info
        info = await anyio.to_thread.run_sync(self.store.token_info, token)
        if len(self._seen) >= self.size:
            self._seen.clear()  # crude, but bounded: a flood of made-up tokens cannot grow it
        self._seen[token] = (now, info)
        return info
