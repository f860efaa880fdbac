"""A channel that writes each notification to the log: for trying a policy out, and for tests.

Each row becomes one INFO record on the ``sluicegate.notify.console`` logger holding the
generic webhook's JSON body (:func:`~sluicegate.notify.channels.webhook.webhook_body`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any

from sluicegate.notify.channels.base import Channel, Delivery
from sluicegate.notify.channels.webhook import webhook_body

__all__ = ["ConsoleChannel"]

log = logging.getLogger("sluicegate.notify.console")


class ConsoleChannel(Channel):
    """Accepts the target ``console`` and logs each of its rows."""

    kind = "console"

    def send(self, delivery: Delivery) -> Mapping[str, Any]:
        body = webhook_body(delivery.view, event=delivery.event)
        log.info("%s", json.dumps(body, sort_keys=True, ensure_ascii=False))
        return {}
