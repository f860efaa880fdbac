"""How the two clients use httpx: what both make the same way, written once.

TLS contexts are made once per process (loading the CA bundle costs 30-50 ms, which every new
client paid again), the environment's proxies are read only when it names one (httpx scans
every environment variable for each new client, and an Airflow task has hundreds), the server's
URL is checked when a client is made, and an answer is read, or turned into the
:class:`~sluicegate.exceptions.ClientError` it is, the same way for both.
"""

from __future__ import annotations

import functools
import os
import ssl
import sys
from typing import Any, TypeVar
from urllib.parse import urlsplit

import httpx

from sluicegate.calls import ApiCall
from sluicegate.exceptions import ClientError, UnreachableError

__all__ = [
    "ca_verified",
    "checked_url",
    "httpx_options",
    "proxies_in_environment",
    "read_answer",
    "request_args",
    "tls_for",
    "trusts_nobody",
    "unreachable",
]

T = TypeVar("T")


@functools.lru_cache(maxsize=1)
def ca_verified() -> ssl.SSLContext:
    """httpx's default TLS context (certifi, or SSL_CERT_FILE/SSL_CERT_DIR), made once.

    Making it loads the CA bundle: 30-50 ms, which every new client paid again (an Airflow
    gate makes one per task run, and one more when it resumes).
    """
    return httpx.create_ssl_context()


@functools.lru_cache(maxsize=1)
def trusts_nobody() -> ssl.SSLContext:
    """A TLS context with no CA: any certificate fails. For a server on plain ``http://``,
    where TLS is never used (redirects are not followed), so a fresh task process does not
    load the CA bundle it would never need; were it ever used, it fails closed."""
    return ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)


def tls_for(server_url: str) -> ssl.SSLContext:
    """The TLS context a client of ``server_url`` holds (see the two above)."""
    return ca_verified() if server_url.lower().startswith("https:") else trusts_nobody()


#: The variables through which httpx takes a proxy from the environment (NO_PROXY only
#: narrows these; SSL_CERT_FILE/DIR are read by :func:`ca_verified`).
_PROXY_VARIABLES = ("https_proxy", "HTTPS_PROXY", "http_proxy", "HTTP_PROXY", "all_proxy",
                    "ALL_PROXY")  # fmt: skip


def proxies_in_environment() -> bool:
    """Whether the environment names a proxy: only then must httpx read it (``trust_env``).

    httpx finds proxies by scanning every environment variable (``urllib``'s
    ``getproxies()``) for each new client, and an Airflow task has hundreds of them; a few
    look-ups tell the same.
    """
    if sys.platform in ("darwin", "win32"):  # there urllib also reads the system's settings
        return True
    return any(os.environ.get(name) for name in _PROXY_VARIABLES)


def checked_url(server_url: str) -> str:
    """``server_url`` without its trailing slash, once it is sure to be an ``http(s)`` URL with
    a host and a port that exists: ``ValueError`` naming it otherwise, when the client is made,
    rather than an error of the standard library at its first call."""
    parts = urlsplit(server_url)
    # Shown without what comes before an "@": a URL may carry credentials.
    shown = f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}{parts.path}"
    try:
        parts.port  # noqa: B018 - parsing the port is the check
    except ValueError as err:
        raise ValueError(f"server URL {shown!r}: {err}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"server URL {shown!r} is not an http:// or https:// URL with a host")
    return server_url.rstrip("/")


def httpx_options(
    server_url: str | None, token: str | None, timeout: float, transport: Any
) -> tuple[str, dict[str, Any]]:
    """The server's URL (``server_url`` and ``token`` default to the settings) and the
    arguments of the httpx client either client makes. A transport given by the caller
    carries its own connections: the environment's proxies do not apply to it."""
    if server_url is None or token is None:
        # Only then: the settings (pydantic-settings, yaml, the config file) cost more than
        # the call a client given both makes.
        from sluicegate.settings import load_settings

        s = load_settings()
        server_url = server_url or s.server_url
        if token is None and s.token is not None:
            token = s.token.get_secret_value()
    url = checked_url(server_url)
    headers = {"Accept": "application/json", "User-Agent": "sluicegate"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    options = {
        "base_url": url,
        "headers": headers,
        "timeout": timeout,
        "transport": transport,
        "verify": tls_for(url),
        "trust_env": proxies_in_environment(),
    }
    return url, options


def request_args(call: ApiCall[Any]) -> dict[str, Any]:
    """The arguments of ``httpx.(Async)Client.request`` for ``call``."""
    return {
        "method": call.method,
        "url": call.path,
        "json": call.json,
        "params": call.params,
        "timeout": call.timeout if call.timeout is not None else httpx.USE_CLIENT_DEFAULT,
    }


def read_answer(call: ApiCall[T], response: httpx.Response) -> T:
    """``call``'s answer read from ``response``, or the :class:`ClientError` it is."""
    if not response.is_success:
        try:
            body = response.json()
            error, detail = str(body["error"]), str(body["detail"])
        except (ValueError, KeyError, TypeError):
            error, detail = "http_error", response.text[:200] or response.reason_phrase
        raise ClientError(response.status_code, error, detail)
    return call.read(response.json())


def unreachable(server_url: str, err: httpx.TransportError) -> UnreachableError:
    """What a call that got no answer raises (refused, timed out, not HTTP), naming the server."""
    why = str(err) or type(err).__name__
    return UnreachableError(f"cannot reach {server_url}: {why}")
