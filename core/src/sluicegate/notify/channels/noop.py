"""A channel that sends nothing: a rule's ``notify: [noop]``, or a channel switched off."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sluicegate.notify.channels.base import SKIPPED, Channel, Delivery

__all__ = ["NoopChannel"]


class NoopChannel(Channel):
    """Accepts the target ``noop`` and settles each of its rows as skipped."""

    kind = "noop"

    def send(self, delivery: Delivery) -> Mapping[str, Any]:
        return SKIPPED
