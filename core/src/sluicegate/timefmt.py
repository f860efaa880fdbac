"""Times and durations: as people write them in the policy and settings, and as reviewers
read them, the same on the review pages and in chat."""

from __future__ import annotations

import re
from datetime import datetime, timedelta

from sluicegate.model import Status

__all__ = ["parse_duration", "span", "time_left", "when"]

_DURATION = re.compile(r"^(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")


def parse_duration(value: str | int) -> timedelta:
    """``"24h"``, ``"1h30m"``, ``"2d"``, ``"90s"`` or a number of seconds, as a timedelta.

    A ValueError names the value when it is not one of those, not positive, or over a year.
    """
    if isinstance(value, bool):
        raise ValueError(f"duration {value!r} is not a duration")
    if isinstance(value, int):
        seconds = value
    else:
        match = _DURATION.match(value.strip())
        if not value.strip() or match is None:
            raise ValueError(f"duration {value!r} is not like 30s, 15m, 24h, 2d or 1h30m")
        d, h, m, s = (int(g) if g else 0 for g in match.groups())
        seconds = ((d * 24 + h) * 60 + m) * 60 + s
    if seconds <= 0:
        raise ValueError(f"duration {value!r} must be positive")
    if seconds > 366 * 86400:
        raise ValueError(f"duration {value!r} is longer than a year")
    return timedelta(seconds=seconds)


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
