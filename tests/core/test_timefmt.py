"""Durations as the policy and settings take them (``timeout: 24h``, ``link_ttl: 1h30m``)."""

from __future__ import annotations

import pytest

from sluicegate.timefmt import parse_duration

# ----------------------------------------------------------------- durations


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90s", 90), ("15m", 900), ("24h", 86400), ("2d", 172800), ("1h30m", 5400), (3600, 3600)],
)
def test_durations(text: str | int, seconds: int) -> None:
    assert parse_duration(text).total_seconds() == seconds


@pytest.mark.parametrize("text", ["", "0s", "1 hour", "h", "-5m", "400d"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)
