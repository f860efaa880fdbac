"""The approval server (``pip install 'sluicegate[server]'``): HTTP API v1 and review pages.

Build it with :func:`create_app`; run it with ``sluicegate serve``.
"""

from __future__ import annotations

from sluicegate.server.app import create_app

__all__ = ["create_app"]
