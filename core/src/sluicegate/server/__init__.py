"""The approval server (``pip install 'sluicegate[server]'``): HTTP API v1 and review pages.

Build it with :func:`create_app`; run it with ``sluicegate serve``. A request goes
route -> :mod:`~sluicegate.server.service` -> :mod:`sluicegate.workflow` -> the store, every
write on the one group-commit writer. The modules:

- ``app``: the app factory; ``wiring``: the parts, built and connected; ``lifespan``: start,
  stop and background work; ``middleware``: body limit, ``nosniff``, access log; ``errors``:
  exceptions to status codes; ``run``: uvicorn, one process or several;
- ``service``: the routes' one way into the workflow; ``group_commit``: the one write path;
  ``long_polls``: wakes waiters when a request ends, whichever replica ended it;
- ``auth`` and ``tokens``: who calls the API; ``keys``: the signing keys; ``metrics``;
- the channels: ``api/`` (requests, audit, lineage), ``pages/`` (review pages), ``slack/``.
"""

from __future__ import annotations

from sluicegate.server.app import create_app

__all__ = ["create_app"]
