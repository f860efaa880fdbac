"""Notification channels as a registry, in the shape of openlineage-python's transports.

One module per channel: :mod:`.slack` (channel posts, direct messages, incoming webhooks;
its Block Kit in :mod:`.slack_blocks`), :mod:`.teams`, :mod:`.webhook`, :mod:`.prefect`
(resuming a paused Prefect flow run: the one orchestrator-specific channel), :mod:`.console`
and :mod:`.noop`. Each is a :class:`Channel` with a ``kind`` and a :class:`ChannelConfig`;
:mod:`.factory` makes them from settings, from config dicts, or from a dotted path for a
channel of one's own.

Identity. A channel message is read by everyone in the channel, the job's owner included, so
no channel puts a reviewer's signed link in one: a link that decides as alice, in a message
carol can read, would let carol decide as alice. Shared messages carry the review page's plain
link (``view.review_url``), where each reviewer proves who they are; Slack buttons may stay,
because Slack signs who clicked. Only a message one person reads (a Slack direct message) may
point at that person's own signed link.
"""

from __future__ import annotations

from sluicegate.notify.channels.base import (
    SKIPPED,
    Change,
    Channel,
    ChannelConfig,
    Delivery,
    DeliveryContext,
    scheme_of,
)
from sluicegate.notify.channels.factory import (
    ChannelFactory,
    Channels,
    default_factory,
    register_channel,
)

__all__ = [
    "SKIPPED",
    "Change",
    "Channel",
    "ChannelConfig",
    "ChannelFactory",
    "Channels",
    "Delivery",
    "DeliveryContext",
    "default_factory",
    "register_channel",
    "scheme_of",
]
