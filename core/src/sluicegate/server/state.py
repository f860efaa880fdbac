"""What every route needs, built once per app: settings, store, policy, workflow, hub."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING

import anyio
from fastapi import Request

from sluicegate.approvals import Approvals
from sluicegate.lineage.emitter import LineageEmitter
from sluicegate.lineage.gate import GateLineage
from sluicegate.lineage.index import LineageIndex
from sluicegate.notify.dispatch import Dispatcher
from sluicegate.notify.outbox import Channels, Planner
from sluicegate.policy import Policy
from sluicegate.server._refused_links import RefusedLinks
from sluicegate.server.hub import StatusHub
from sluicegate.server.keys import SigningKeys, signing_keys
from sluicegate.server.writer import Writer
from sluicegate.settings import Settings
from sluicegate.store import Store
from sluicegate.store.outbox import OutboxTable
from sluicegate.store.repository import TokenInfo
from sluicegate.store.sessions import SessionTable

if TYPE_CHECKING:
    from sluicegate.server.metrics import Metrics

__all__ = ["ServerState", "TokenCache", "channels_of", "state_dependency", "state_of"]

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
        key = token
        now = time.monotonic()
        hit = self._seen.get(key)
        if hit is not None and now - hit[0] < self.ttl:
            info = hit[1]
            # An expiry is known in advance: it holds to the second, cached or not.
            if info is not None and info.expires_at is not None and info.expired():
                return None
            return info
        info = await anyio.to_thread.run_sync(self.store.token_info, token)
        if len(self._seen) >= self.size:
            self._seen.clear()  # crude, but bounded: a flood of made-up tokens cannot grow it
        self._seen[key] = (now, info)
        return info


@dataclass
class ServerState:
    """The server's parts, shared by all routes (and nothing that only one replica knows)."""

    settings: Settings
    store: Store
    policy: Policy
    approvals: Approvals
    hub: StatusHub
    #: The key that signs links, sessions and CSRF tokens (``keys.current``).
    secret_key: bytes
    #: That key and the previous ones, which still verify what they signed.
    keys: SigningKeys
    link_ttl: timedelta
    metrics: Metrics
    tokens: TokenCache
    #: Review-page sessions, checked in the database on every page request (never cached).
    sessions: SessionTable
    writer: Writer
    lineage: LineageIndex
    outbox: OutboxTable
    dispatcher: Dispatcher
    #: Review links refused, counted into rate-limited ``link.rejected`` audit rows.
    refused_links: RefusedLinks

    @classmethod
    def build(
        cls, settings: Settings, store: Store, policy: Policy, keys: SigningKeys | None = None
    ) -> ServerState:
        """Everything the routes share; ``keys`` default to :func:`signing_keys`."""
        from sluicegate.policy import parse_duration
        from sluicegate.server.metrics import Metrics

        # Never from the database (whoever reads it could sign in as anyone): the setting, or
        # a key file beside a SQLite database; PostgreSQL without the setting is refused.
        keys = keys or signing_keys(settings, store.engine.url)
        key = keys.current
        hub = StatusHub()
        store.listeners.append(hub.publish)
        metrics = Metrics(store)
        # The gates' own events go where OpenLineage's configuration says (openlineage.yml,
        # OPENLINEAGE_URL, OPENLINEAGE__TRANSPORT__*), from a background thread; none: off.
        emitter = LineageEmitter.from_environment(
            on_result=lambda outcome: metrics.lineage_emitted.labels(outcome).inc(),
            on_drop=lambda reason: metrics.lineage_dropped.labels(reason).inc(),
        )
        lineage = GateLineage(emitter, review_url=lambda rid: f"{settings.server_url}/r/{rid}")
        # Notifications: planned in the change's own transaction, sent by the dispatcher.
        table = OutboxTable(store)
        planner = Planner(table, policy, channels_of(settings))
        store.on_change.append(planner)
        dispatcher = Dispatcher(
            store,
            table,
            planner,
            settings,
            key,
            parse_duration(settings.link_ttl),
            on_result=lambda channel, outcome: metrics.notifications.labels(channel, outcome).inc(),
        )
        planner.wake = dispatcher.wake.set
        return cls(
            settings=settings,
            store=store,
            policy=policy,
            approvals=Approvals(store, policy, lineage),
            hub=hub,
            secret_key=key,
            keys=keys,
            link_ttl=parse_duration(settings.link_ttl),
            metrics=metrics,
            tokens=TokenCache(store),
            sessions=SessionTable(store),
            writer=Writer(store, on_commit=metrics.count_batch),
            lineage=LineageIndex(store, policy),
            outbox=table,
            dispatcher=dispatcher,
            refused_links=RefusedLinks(store),
        )

    def review_url(self, request_id: str) -> str:
        """Where a reviewer sees the request."""
        return f"{self.settings.server_url}/r/{request_id}"


def state_of(request: Request) -> ServerState:
    """The app's :class:`ServerState`."""
    st: ServerState = request.app.state.sluicegate
    return st


async def state_dependency(request: Request) -> ServerState:
    """:func:`state_of` as an async dependency (FastAPI runs sync ones in a thread)."""
    return state_of(request)


def channels_of(settings: Settings) -> Channels:
    """Which notification channels the settings configure."""
    return Channels(
        slack_bot=settings.slack.bot_token is not None,
        slack_webhook=settings.slack.webhook_url is not None,
        teams=settings.teams.webhook_url is not None,
        webhook=settings.webhook.url is not None,
        slack_dm_reviewers=settings.slack.dm_reviewers,
        prefect=settings.prefect.api_url is not None,
    )
