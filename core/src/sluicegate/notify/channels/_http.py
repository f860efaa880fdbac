"""What the HTTP channels share: one connection pool each, and one reading of the answer."""

from __future__ import annotations

import threading
from typing import Any

import httpx

from sluicegate.notify.channels.base import Channel, ChannelConfig
from sluicegate.notify.errors import BACKOFF, SendError
from sluicegate.notify.signing import WEBHOOK_DELIVERY_HEADER

__all__ = ["HttpChannel", "retry_after"]


def retry_after(headers: httpx.Headers | dict[str, str]) -> float:
    """Seconds a 429 asks to wait (``Retry-After``; 1 when it does not say)."""
    return float(headers.get("Retry-After", "1") or 1)


class HttpChannel(Channel):
    """A channel that posts over HTTP: a pooled client, opened on first use, closed by
    :meth:`close` (and opened again if the channel is used after)."""

    def __init__(self, config: ChannelConfig) -> None:
        super().__init__(config)
        self._http: httpx.Client | None = None
        self._lock = threading.Lock()

    @property
    def http(self) -> httpx.Client:
        """The channel's HTTP client (``timeout`` from its config)."""
        with self._lock:
            if self._http is None or self._http.is_closed:
                self._http = httpx.Client(timeout=self.config.timeout)
            return self._http

    def close(self) -> None:
        with self._lock:
            if self._http is not None:
                self._http.close()

    def post(
        self,
        what: str,
        url: str,
        delivery_id: str,
        *,
        json: Any = None,
        content: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        """POST ``json`` (or raw ``content``) to ``url``; the answer if it is a success.

        Raises :class:`SendError`: after ``Retry-After`` for a 429, after a backoff for a 5xx
        or a network error, never again for another 4xx. ``what`` names the service in the
        error; the URL never appears in one (a webhook's URL is its secret).
        """
        headers = {**(headers or {}), WEBHOOK_DELIVERY_HEADER: delivery_id}
        try:
            if content is not None:
                response = self.http.post(url, content=content, headers=headers)
            else:
                response = self.http.post(url, json=json, headers=headers)
        except httpx.HTTPError as err:
            raise SendError(f"{what}: {type(err).__name__}", BACKOFF) from None
        if response.status_code == 429:
            raise SendError(f"{what}: rate limited", retry_after(response.headers))
        if response.status_code >= 500:
            raise SendError(f"{what}: HTTP {response.status_code}", BACKOFF)
        if response.status_code >= 400:
            raise SendError(f"{what}: HTTP {response.status_code}", None)
        return response
