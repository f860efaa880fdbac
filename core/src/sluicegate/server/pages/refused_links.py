"""Refused review links, recorded without trusting them and without letting them flood the log.

A link that fails its check (forged, altered, expired, for another request) proves nothing
about who sent it: the reviewer it names may be made up, and anyone can send one, with no
token, on a plain GET (so does every link scanner). The attempts are still worth recording (a
request under attack, a reviewer's old link replayed), but:

- never as anyone's act: the row is ``link.rejected`` with no actor. The names the links
  claimed are data, under ``unverified_claims``, at most :data:`MAX_CLAIMS` of them, each cut
  to :data:`CLAIM_CHARS` characters; ``decision.rejected`` stays for verified identities;
- aggregated: on each replica, the first refused link of a request writes a row at once
  (``attempts: 1``), and the ones that follow within :data:`WINDOW` seconds are counted and
  written as one row when the window closes (or when the server stops). A request therefore
  gets at most one row per window per replica, whatever the rate; past :data:`MAX_TRACKED`
  requests in one window, the rest share one server-wide row (``request_id`` null).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sluicegate import audit
from sluicegate.model import ApprovalRequest, utcnow
from sluicegate.store import Store, request_event

__all__ = ["CLAIM_CHARS", "MAX_CLAIMS", "MAX_TRACKED", "WINDOW", "RefusedLinks"]

log = logging.getLogger("sluicegate.server")

#: Seconds during which further refused links of a request are only counted.
WINDOW = 60.0
#: Requests followed one by one in a window; the rest are counted together.
MAX_TRACKED = 100
#: Claimed reviewer names kept per row, and the characters kept of each.
MAX_CLAIMS = 5
CLAIM_CHARS = 64
_MAX_REASONS = 5
_OTHER = "(other reasons)"


@dataclass
class _Tally:
    """The attempts on one request (or on the untracked rest) not yet written."""

    request: ApprovalRequest | None
    window_ends: float
    attempts: int = 0
    reasons: Counter[str] = field(default_factory=Counter)
    verdicts: Counter[str] = field(default_factory=Counter)
    claims: list[str] = field(default_factory=list)
    first_at: str = ""
    last_at: str = ""
    timer: threading.Timer | None = None

    def add(self, claimed: str | None, reason: str, verdict: str | None) -> None:
        now = audit.format_ts(utcnow())
        self.first_at = self.first_at or now
        self.last_at = now
        self.attempts += 1
        if reason in self.reasons or len(self.reasons) < _MAX_REASONS:
            self.reasons[reason] += 1
        else:
            self.reasons[_OTHER] += 1
        if verdict:
            self.verdicts[verdict] += 1
        if claimed is not None:
            shown = claimed[:CLAIM_CHARS]
            if shown not in self.claims and len(self.claims) < MAX_CLAIMS:
                self.claims.append(shown)

    def take(self) -> audit.AuditEvent:
        """The row for what was counted; the tally starts again from zero."""
        data: dict[str, Any] = {
            "channel": "link",
            "attempts": self.attempts,
            "reasons": dict(self.reasons),
            "verdicts": dict(self.verdicts),
            "unverified_claims": list(self.claims),
            "first_at": self.first_at,
            "last_at": self.last_at,
            "window_seconds": WINDOW,
        }
        self.attempts = 0
        self.reasons, self.verdicts, self.claims = Counter(), Counter(), []
        self.first_at = self.last_at = ""
        if self.request is None:
            return audit.AuditEvent(kind="link.rejected", data=data)
        return request_event(self.request, "link.rejected", actor=None, **data)


class RefusedLinks:
    """Counts refused links and writes their ``link.rejected`` rows (see the module)."""

    def __init__(
        self,
        store: Store,
        *,
        window: float = WINDOW,
        max_tracked: int = MAX_TRACKED,
        write: Callable[..., object] | None = None,
    ) -> None:
        self.store = store
        #: How a row is written: ``write(store.record, rows)``, blocking (the server passes
        #: its writer's :meth:`~sluicegate.server.group_commit.Writer.call`); by default the
        #: store's own transaction. Called from the noting thread and from timers, never
        #: from the event loop.
        self.write = write
        self.window = window
        self.max_tracked = max_tracked
        self._lock = threading.Lock()
        self._tallies: dict[str | None, _Tally] = {}
        self._closed = False

    def note(
        self,
        request: ApprovalRequest,
        *,
        claimed: str | None,
        reason: str,
        verdict: str | None = None,
    ) -> None:
        """Count one refused link on ``request``; write a row now if its window is new.

        ``claimed`` is the reviewer the link names, unverified (None if unreadable).
        """
        now = time.monotonic()
        with self._lock:
            key = self._key(str(request.id), now)
            tally = self._tallies.get(key)
            fresh = tally is None or (tally.window_ends <= now and tally.attempts == 0)
            if tally is None or fresh:
                tally = _Tally(request if key is not None else None, now + self.window)
                self._tallies[key] = tally
            tally.add(claimed, reason, verdict)
            if fresh:
                event = tally.take()
            else:
                event = None
                if tally.timer is None and not self._closed:
                    tally.timer = threading.Timer(
                        max(tally.window_ends - now, 0.0), self._window_closed, args=(key,)
                    )
                    tally.timer.daemon = True
                    tally.timer.start()
        if event is not None:
            self._record(event)

    def _key(self, request_id: str, now: float) -> str | None:
        """``request_id``, or None (the shared tally) once too many requests are followed."""
        if request_id in self._tallies or len(self._tallies) < self.max_tracked:
            return request_id
        for key, tally in list(self._tallies.items()):  # forget idle ones first
            if tally.window_ends <= now and tally.attempts == 0 and tally.timer is None:
                del self._tallies[key]
        return request_id if len(self._tallies) < self.max_tracked else None

    def _window_closed(self, key: str | None) -> None:
        """The timer's end of a window: write what it counted, and open the next window."""
        with self._lock:
            tally = self._tallies.get(key)
            if tally is None:
                return
            tally.timer = None
            if tally.attempts == 0:
                return
            tally.window_ends = time.monotonic() + self.window
            event = tally.take()
        self._write(event)

    def close(self) -> None:
        """Write every count still held: the server is stopping. After this, the first refused
        link of a window is still written, and the ones after it are no longer counted."""
        with self._lock:
            self._closed = True
            events = []
            for tally in self._tallies.values():
                if tally.timer is not None:
                    tally.timer.cancel()
                    tally.timer = None
                if tally.attempts:
                    events.append(tally.take())
            self._tallies.clear()
        for event in events:
            self._write(event)

    def _record(self, event: audit.AuditEvent) -> None:
        if self.write is None:
            self.store.record([event])
        else:
            self.write(self.store.record, [event])

    def _write(self, event: audit.AuditEvent) -> None:
        # A boundary (a timer thread, shutdown): a failed write is logged with its count.
        try:
            self._record(event)
        except Exception:
            log.exception(
                "could not record %s refused review links of request %s",
                event.data.get("attempts"),
                event.request_id,
            )
