"""Times and durations as reviewers read them, the same on the review pages and in chat."""

from __future__ import annotations

from datetime import datetime, timedelta

from sluicegate.model import Status

__all__ = ["span", "time_left", "when"]


def when(moment: datetime) -> str:
    """A time as reviewers read it: ``2026-11-25 12:00 UTC``."""
    return f"{moment:%Y-%m-%d %H:%M} UTC"


def span(delta: timedelta) -> str:
    """A duration in its two largest units: ``2 d 3 h``, ``5 h 12 min``, ``4 min``."""
    minutes = int(delta.total_seconds() // 60)
    days, minutes = divmod(minutes, 24 * 60)
    hours, minutes = divmod(minutes, 60)
    if days:
        return f"{days} d {hours} h"
    if hours:
        return f"{hours} h {minutes} min"
    return f"{minutes} min" if minutes else "less than a minute"


def time_left(status: Status, expires: datetime | None, now: datetime) -> str:
    """How long a pending request still waits, or how it ended."""
    if status is not Status.PENDING:
        return f"ended: {status.value}"
    if expires is None:
        return "no deadline"
    if now >= expires:
        return f"expired at {when(expires)}"
    return f"{span(expires - now)} left (expires {when(expires)})"
