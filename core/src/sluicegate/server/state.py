"""What every route needs, built once per app: settings, store, policy, workflow, hub."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING

from fastapi import Request

from sluicegate.approvals import Approvals
from sluicegate.policy import Policy
from sluicegate.server.hub import StatusHub
from sluicegate.settings import Settings
from sluicegate.store import Store

if TYPE_CHECKING:
    from sluicegate.server.metrics import Metrics

__all__ = ["ServerState", "state_of"]


@dataclass
class ServerState:
    """The server's parts, shared by all routes (and nothing that only one replica knows)."""

    settings: Settings
    store: Store
    policy: Policy
    approvals: Approvals
    hub: StatusHub
    secret_key: bytes
    link_ttl: timedelta
    metrics: Metrics

    @classmethod
    def build(cls, settings: Settings, store: Store, policy: Policy) -> ServerState:
        from sluicegate.policy import parse_duration
        from sluicegate.server.metrics import Metrics

        if settings.secret_key is not None:
            key = settings.secret_key.get_secret_value().encode()
        else:
            # Generated once and kept in the database, so every replica signs alike.
            key = store.server_value("secret_key", lambda: secrets.token_urlsafe(48)).encode()
        hub = StatusHub()
        store.listeners.append(hub.publish)
        return cls(
            settings=settings,
            store=store,
            policy=policy,
            approvals=Approvals(store, policy),
            hub=hub,
            secret_key=key,
            link_ttl=parse_duration(settings.link_ttl),
            metrics=Metrics(store, hub),
        )

    def review_url(self, request_id: str) -> str:
        """Where a reviewer sees the request."""
        return f"{self.settings.server_url}/r/{request_id}"


def state_of(request: Request) -> ServerState:
    """The app's :class:`ServerState`."""
    st: ServerState = request.app.state.sluicegate
    return st
