"""The server's parts, built and connected in one place: read :meth:`ServerState.build`.

A route reaches the store in a straight line: route -> :class:`~sluicegate.server.service.
GateService` -> :class:`~sluicegate.workflow.Workflow` -> :class:`~sluicegate.store.Store`,
every write on the group-commit :class:`~sluicegate.server.group_commit.Writer`. What happens
*after* a change is the store's hooks, all connected here and nowhere else: the status hub
hears each committed change (it wakes long polls), the notification planner writes its outbox
rows inside the change's own transaction (and wakes the dispatcher once they are committed),
and the workflow sends the lineage of each committed moment.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from fastapi import Request

from sluicegate.lineage.emitter import LineageEmitter
from sluicegate.lineage.index import LineageIndex
from sluicegate.notify.channels import Channels
from sluicegate.notify.dispatch import Dispatcher
from sluicegate.notify.planner import Planner
from sluicegate.policy import Policy, parse_duration
from sluicegate.server.group_commit import Writer
from sluicegate.server.keys import SigningKeys, signing_keys
from sluicegate.server.long_polls import StatusHub
from sluicegate.server.metrics import Metrics
from sluicegate.server.pages.refused_links import RefusedLinks
from sluicegate.server.service import GateService
from sluicegate.server.tokens import TokenCache
from sluicegate.settings import Settings
from sluicegate.store import Store
from sluicegate.store.notifications import OutboxTable
from sluicegate.store.sessions import SessionTable
from sluicegate.workflow import Workflow

__all__ = ["ServerState", "state_dependency", "state_of"]


@dataclass
class ServerState:
    """The server's parts, shared by all routes (and nothing that only one replica knows)."""

    settings: Settings
    store: Store
    policy: Policy
    #: The approval workflow: every rule about opening, deciding, cancelling and releasing.
    workflow: Workflow
    #: The routes' way into the workflow: on the writer, counted in the metrics.
    gates: GateService
    #: Wakes long polls when a request they wait on changes.
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
    #: The one write path: group commit in one thread.
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
        # Never from the database (whoever reads it could sign in as anyone): the setting, or
        # a key file beside a SQLite database; PostgreSQL without the setting is refused.
        keys = keys or signing_keys(settings, store.engine.url)
        link_ttl = parse_duration(settings.link_ttl)
        metrics = Metrics(store)
        writer = Writer(store, on_commit=metrics.count_batch)

        # After a change commits, the long polls waiting on it wake.
        hub = StatusHub()
        store.listeners.append(hub.publish)

        # Notifications: planned in the change's own transaction, sent by the dispatcher.
        outbox = OutboxTable(store)
        # Which channels: the registry's, from the settings' sections and notify.channels (one
        # that cannot load is a ConfigError here: the server does not start without it).
        planner = Planner(outbox, policy, Channels.from_settings(settings))
        store.on_change.append(planner)
        dispatcher = Dispatcher(
            store,
            outbox,
            planner,
            settings,
            keys.current,
            link_ttl,
            on_result=metrics.count_notification,
        )
        planner.wake = dispatcher.wake.set

        # The requests' own lineage goes where OpenLineage's configuration says
        # (openlineage.yml, OPENLINEAGE_URL, OPENLINEAGE__TRANSPORT__*), from a background
        # thread; none: off.
        emitter = LineageEmitter.from_environment(
            on_result=metrics.count_lineage_sent, on_drop=metrics.count_lineage_dropped
        )
        runs = None
        if emitter.enabled:  # openlineage-python is imported only for lineage that goes out
            from sluicegate.lineage.approval_runs import ApprovalRuns

            runs = ApprovalRuns(emitter, server_url=settings.server_url)
        workflow = Workflow(store, policy, runs)
        lineage = LineageIndex(store, policy)
        return cls(
            settings=settings,
            store=store,
            policy=policy,
            workflow=workflow,
            gates=GateService(workflow, writer, metrics, lineage),
            hub=hub,
            secret_key=keys.current,
            keys=keys,
            link_ttl=link_ttl,
            metrics=metrics,
            tokens=TokenCache(store),
            sessions=SessionTable(store),
            writer=writer,
            lineage=lineage,
            outbox=outbox,
            dispatcher=dispatcher,
            refused_links=RefusedLinks(store, write=writer.call),
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
