"""Listening sockets for ``sluicegate serve``, made before anything is served.

Kept apart from the server (whose imports take a second or two) so that the command says at
once when it cannot listen where it was asked to, in one line, and never "serving on" first.
"""

from __future__ import annotations

import socket

from sluicegate.exceptions import ConfigError

__all__ = ["listen"]


def listen(host: str, port: int, count: int = 1) -> list[socket.socket]:
    """``count`` sockets listening on ``host:port``, or :class:`ConfigError` in one line
    (the port is taken, the address is not this machine's) before anything is served.

    Several sockets share the port (``SO_REUSEPORT``: the kernel spreads new connections
    evenly over them; one shared socket would hand most keep-alive connections to whichever
    process happened to be accepting). So that they never join a port another server listens
    on, it is first bound alone.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    socks: list[socket.socket] = []
    try:
        if count > 1:
            with socket.socket(family) as alone:
                alone.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                alone.bind((host, port))
        for _ in range(count):
            sock = socket.socket(family)
            socks.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if count > 1:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind((host, port))
            sock.listen(2048)
            sock.set_inheritable(True)
    except OSError as err:
        for sock in socks:
            sock.close()
        why = (err.strerror or str(err)).lower()
        raise ConfigError(f"cannot listen on {host}:{port}: {why}") from None
    return socks
