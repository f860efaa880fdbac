"""What every model shares: a frozen pydantic base that refuses NUL, canonical JSON, the time
in UTC, UUIDv7 ids, and pydantic's errors in one line."""

from __future__ import annotations

import json
import os
import time
import uuid
from datetime import datetime, timezone
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

__all__ = ["Frozen", "canonical_json", "no_nul", "utcnow", "uuid7", "validation_message"]


def utcnow() -> datetime:
    """The current time, timezone-aware, in UTC."""
    return datetime.now(timezone.utc)


_last_v7 = 0


def uuid7() -> uuid.UUID:
    """A UUIDv7 (RFC 9562): time-ordered, so ids sort by creation like the audit log does.

    Python's ``uuid`` module only has ``uuid7`` from 3.14 on; this one is monotonic within a
    process (a clash on the same millisecond moves the counter bits forward).
    """
    global _last_v7
    ms = time.time_ns() // 1_000_000
    rand = int.from_bytes(os.urandom(10), "big")
    rand_a, rand_b = (rand >> 62) & 0xFFF, rand & ((1 << 62) - 1)
    value = (ms << 80) | (0x7 << 76) | (rand_a << 64) | (0x2 << 62) | rand_b
    if value <= _last_v7:
        value = _last_v7 + 1
    _last_v7 = value
    return uuid.UUID(int=value)


def canonical_json(value: Any) -> str:
    """JSON with sorted keys and no insignificant whitespace: the same value, the same text."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def no_nul(value: Any) -> Any:
    """Refuse text holding NUL: PostgreSQL cannot store it and SQLite can, so both refuse it
    up front, as bad input (a 4xx), rather than fail on one database only."""
    if isinstance(value, str) and "\x00" in value:
        raise ValueError("must not contain NUL characters")
    return value


class Frozen(BaseModel):
    """The base of every domain value: immutable, no unknown fields, text trimmed and never
    holding NUL."""

    model_config = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=True)

    _no_nul = field_validator("*", mode="after")(classmethod(lambda cls, v: no_nul(v)))


def validation_message(err: ValidationError, source: str) -> str:
    """pydantic's first error in one line, ``SOURCE: FIELD: problem`` (never its help URL)."""
    first = err.errors()[0]
    loc = ".".join(str(p) for p in first["loc"]) or "(root)"
    msg = str(first["msg"]).removeprefix("Value error, ")
    more = f" (and {err.error_count() - 1} more)" if err.error_count() > 1 else ""
    return f"{source}: {loc}: {msg}{more}"
