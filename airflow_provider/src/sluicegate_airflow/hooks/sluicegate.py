"""``SluicegateHook``: the Sluicegate server of an Airflow connection of type ``sluicegate``.

The connection's host is the server's URL (``https://sluicegate.example.com``; a bare host
gets ``http://``, and ``port`` is added when given) and its password is a ``request``-scoped
token (``sluicegate token create --principal airflow-prod --scope request``). For example::

    AIRFLOW_CONN_SLUICEGATE_DEFAULT='{"conn_type": "sluicegate",
                                      "host": "https://sluicegate.example.com",
                                      "password": "sgreq_..."}'

``airflow connections test sluicegate_default`` (and the UI's Test button, both behind
Airflow's ``[core] test_connection = Enabled``) checks the URL and the token with
:meth:`SluicegateHook.test_connection`.

The core's client (and httpx) is imported when a client is made, not with this module: every
task process of a DAG file that uses the provider imports it while it parses the file.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseHook

if TYPE_CHECKING:
    from sluicegate.client import AsyncSluicegateClient, SluicegateClient

__all__ = ["SluicegateHook"]


class SluicegateHook(BaseHook):
    """Clients of the Sluicegate server named by an Airflow connection."""

    conn_name_attr = "sluicegate_conn_id"
    default_conn_name = "sluicegate_default"
    conn_type = "sluicegate"
    hook_name = "Sluicegate"

    def __init__(self, sluicegate_conn_id: str = default_conn_name, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.sluicegate_conn_id = sluicegate_conn_id

    def server(self) -> tuple[str, str]:
        """``(server URL, token)`` from the connection; ValueError naming what is missing."""
        conn = self.get_connection(self.sluicegate_conn_id)
        host = (conn.host or "").strip().rstrip("/")
        if not host:
            raise ValueError(
                f"connection {self.sluicegate_conn_id!r} has no host: set it to the "
                "Sluicegate server's URL"
            )
        if "://" not in host:
            host = f"{conn.schema or 'http'}://{host}"
        if conn.port and host.count(":") < 2:
            host = f"{host}:{conn.port}"
        if not conn.password:
            raise ValueError(
                f"connection {self.sluicegate_conn_id!r} has no password: set it to a "
                "request-scoped Sluicegate token"
            )
        return host, conn.password

    def get_conn(self) -> SluicegateClient:
        """A blocking client (close it when done)."""
        from sluicegate.client import SluicegateClient

        url, token = self.server()
        return SluicegateClient(url, token)

    def get_async_conn(self) -> AsyncSluicegateClient:
        """A non-blocking client, for triggers."""
        from sluicegate.client import AsyncSluicegateClient

        url, token = self.server()
        return AsyncSluicegateClient(url, token)

    def test_connection(self) -> tuple[bool, str]:
        """``(True, message)`` when the server answers an authenticated read with the
        connection's token, else ``(False, why)``: what ``airflow connections test`` shows.

        One ``GET /api/v1/requests?limit=1``: it needs the server up, its database answering
        and the token valid, and changes nothing. The message names the server, never the
        token.
        """
        from sluicegate.client import SluicegateClient
        from sluicegate.exceptions import ClientError, UnreachableError

        try:
            url, token = self.server()
        except ValueError as err:
            return False, str(err)
        try:
            with SluicegateClient(url, token) as client:
                client.list(limit=1)
        except UnreachableError as err:
            return False, f"cannot reach the Sluicegate server: {err.detail}"
        except ClientError as err:
            if err.status == 401:
                return False, f"the Sluicegate server at {url} refused the token: {err.detail}"
            return False, f"the Sluicegate server at {url} answered HTTP {err.status}: {err.detail}"
        except (ValueError, OSError) as err:  # a URL the client cannot use (scheme, TLS files)
            return False, f"cannot use {url!r} as the Sluicegate server: {err}"
        return True, f"the Sluicegate server at {url} accepts the connection's token"
