"""Send OpenLineage events without ever holding the caller: a bounded queue and one thread.

openlineage-python's ``emit()`` is synchronous and raises: its HTTP transport retries with
backoff (about 9 s against a dead backend) and then raises. :class:`LineageEmitter` puts each
event on a bounded queue and returns at once; one daemon thread sends them. A full queue drops
the event. Every event handed to an enabled emitter ends as exactly one of ``sent``,
``failed`` or ``dropped`` (see :attr:`LineageEmitter.counts` and ``on_result``).

Configuration is OpenLineage's own (:meth:`LineageEmitter.from_environment`): the client's
resolution of ``OPENLINEAGE_DISABLED``, ``openlineage.yml`` (``OPENLINEAGE_CONFIG``, ``./``,
``~/.openlineage/``), ``OPENLINEAGE__TRANSPORT__*`` and ``OPENLINEAGE_URL`` (with
``OPENLINEAGE_API_KEY``, ``OPENLINEAGE_ENDPOINT``), with one difference: when nothing at all is
configured, the emitter is disabled instead of printing every event to the console.

A failed send is logged once per :data:`REPORT_INTERVAL` on logger ``sluicegate.lineage``,
with how many failed since, and with every credential the transport holds (API key, token,
URL password, custom header values) masked. urllib3's own warning at each retry is dropped
for the emitter's thread only, so a dead backend does not write five lines per event.
"""

from __future__ import annotations

import logging
import queue
import re
import threading
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

from sluicegate.exceptions import ConfigError

if TYPE_CHECKING:
    from openlineage.client import OpenLineageClient
    from openlineage.client.client import Event
    from openlineage.client.transport import Transport

__all__ = ["DEFAULT_MAX_QUEUE", "OUTCOMES", "REPORT_INTERVAL", "LineageEmitter"]

log = logging.getLogger("sluicegate.lineage")

#: Events waiting to be sent, at most; past that, new events are dropped.
DEFAULT_MAX_QUEUE = 10_000

#: What can become of an event: ``on_result`` gets one of these per event.
OUTCOMES = ("sent", "failed", "dropped")

#: At most one warning about failed sends per this many seconds.
REPORT_INTERVAL = 10.0

_STOP = object()
_FALLBACK_WARNING = "Couldn't find any OpenLineage transport configuration"
_MAX_ERROR_TEXT = 300
_USERINFO = re.compile(r"(?<=://)[^/\s@]+@")
_SECRET_PAIR = re.compile(
    r"(?i)\b(authorization|bearer|api[_-]?key|apikey|token|password|secret)\b"
    r"(['\"]?\s*[:=]\s*['\"]?|\s+)[^\s,'\"}&]+"
)


class LineageEmitter:
    """A non-blocking OpenLineage sender.

    :param target: an ``OpenLineageClient`` (events go through ``client.emit``, with its
        facets, tags and filters), a bare transport (events go to ``transport.emit`` as they
        are), or ``None`` for a disabled emitter. A client or transport of kind ``noop`` also
        gives a disabled emitter.
    :param max_queue: events waiting at most; a full queue drops new ones.
    :param on_result: called with ``"sent"``, ``"failed"`` or ``"dropped"`` for every event,
        from the sending thread (``dropped``: from the caller's); its errors are ignored.
    :param disabled_reason: why a ``None`` target is disabled, for :attr:`disabled_reason`.

    ``emit()`` hands the event over: the sending thread may add facets to it (a client does).
    """

    def __init__(
        self,
        target: OpenLineageClient | Transport | None,
        *,
        max_queue: int = DEFAULT_MAX_QUEUE,
        on_result: Callable[[str], None] | None = None,
        disabled_reason: str | None = None,
    ) -> None:
        if max_queue < 1:
            raise ValueError(f"max_queue must be at least 1, not {max_queue}")
        self._target = target
        self._on_result = on_result
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=max_queue)
        self._lock = threading.Lock()
        self._counts = dict.fromkeys(OUTCOMES, 0)
        self._closed = False
        # Accounting by totals, under `_lock`: every accepted event ends counted exactly once,
        # by the thread (sent/failed) or by close() (queued or still in flight: dropped).
        self._accepted = 0
        self._drained = 0
        self._abandoned = 0
        self._last_report: float | None = None
        self._unreported = 0
        self._close_deadline: float | None = None
        kind = _transport_of(target).kind if target is not None else None
        self._kind = kind
        if target is None:
            self._disabled_reason: str | None = disabled_reason or "no target given"
        elif kind == "noop":
            self._disabled_reason = "the OpenLineage transport is noop (OPENLINEAGE_DISABLED?)"
        else:
            self._disabled_reason = None
        self._thread: threading.Thread | None = None
        if self._disabled_reason is None:
            self._thread = threading.Thread(
                target=self._run, name="sluicegate-lineage", daemon=True
            )
            self._thread.start()

    @classmethod
    def from_environment(cls, **kwargs: Any) -> LineageEmitter:
        """An emitter whose transport OpenLineage's own configuration names.

        The transport comes from ``openlineage.client.OpenLineageClient()``, so its precedence
        holds: ``OPENLINEAGE_DISABLED=true`` (disabled), then the config (``openlineage.yml``
        found through ``OPENLINEAGE_CONFIG``, ``./openlineage.yml`` or
        ``~/.openlineage/openlineage.yml``, merged over ``OPENLINEAGE__TRANSPORT__*``
        variables), then ``OPENLINEAGE_URL`` with ``OPENLINEAGE_API_KEY`` and
        ``OPENLINEAGE_ENDPOINT``.

        "Nothing configured" is what the client itself decides: it falls back to its console
        transport and warns. The emitter sees that fallback (a console transport that the
        config did not ask for) and is disabled instead, with that warning left out. A
        console transport configured on purpose (``type: console``) is kept.

        ``kwargs`` go to the constructor. Raises :class:`~sluicegate.exceptions.ConfigError`
        when the configuration is there but wrong (a missing ``url``, a bad auth section).

        Note: with ``OPENLINEAGE_URL`` set, the client copies it into
        ``OPENLINEAGE__TRANSPORT__TRANSPORTS__DEFAULT_HTTP__*`` variables of this process.
        """
        client, fallback = _client_from_environment()
        if fallback:
            kwargs.setdefault("disabled_reason", "no OpenLineage transport configured")
            return cls(None, **kwargs)
        return cls(client, **kwargs)

    @property
    def enabled(self) -> bool:
        """True when events are sent; False when :meth:`emit` ignores them."""
        return self._disabled_reason is None

    @property
    def disabled_reason(self) -> str | None:
        """Why the emitter is disabled, or None when it is enabled."""
        return self._disabled_reason

    @property
    def transport_kind(self) -> str | None:
        """The transport's ``kind`` (``http``, ``file``, ``composite``...), None without one."""
        return self._kind

    @property
    def counts(self) -> dict[str, int]:
        """How many events were ``sent``, ``failed`` and ``dropped`` so far (a copy)."""
        with self._lock:
            return dict(self._counts)

    def emit(self, event: Event | Callable[[], Event]) -> None:
        """Queue ``event`` for sending and return at once; never raises, never blocks.

        ``event`` may be a function that builds it: it then runs in the sending thread, so a
        caller pays only for queueing (a failure to build counts as ``failed``).

        A disabled emitter ignores the event and counts nothing; a full queue, or a closed
        emitter, drops it (counted).
        """
        if self._disabled_reason is not None:
            return
        with self._lock:
            accepted = False
            if not self._closed:
                try:
                    self._queue.put_nowait(event)
                    accepted = True
                    self._accepted += 1
                except queue.Full:
                    pass
            if not accepted:
                self._counts["dropped"] += 1
        if not accepted:
            self._notify("dropped")

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until every queued event is sent or failed, at most ``timeout`` seconds.

        Returns True when nothing is left, False at the deadline.
        """
        return self._wait_empty(time.monotonic() + max(timeout, 0.0))

    def close(self, timeout: float = 5.0) -> bool:
        """Flush for at most ``timeout`` seconds, then stop the sending thread.

        Returns within the deadline even when the backend hangs: what is still queued then,
        and the event being sent, are counted as dropped (the thread is a daemon and never
        counts the abandoned one again). Returns True when everything was sent or failed.
        Later calls return True at once; :meth:`emit` after close drops.
        """
        deadline = time.monotonic() + max(timeout, 0.0)
        with self._lock:
            if self._closed:
                return True
            self._closed = True
        if self._thread is None:
            return True
        flushed = self._wait_empty(deadline)
        drained = sum(1 for _ in self._drain())
        with self._lock:
            self._drained += drained
            done = self._counts["sent"] + self._counts["failed"] + self._drained
            # What is neither done nor drained is the one event the thread is still sending.
            self._abandoned = self._accepted - done
            dropped = drained + self._abandoned
            self._counts["dropped"] += dropped
            self._close_deadline = deadline
        for _ in range(dropped):
            self._notify("dropped")
        # The queue was emptied after `_closed` was set, so this never meets a full queue.
        self._queue.put_nowait(_STOP)
        self._thread.join(max(deadline - time.monotonic(), 0.0))
        if dropped:
            log.warning(
                "OpenLineage: %d event(s) not sent: the %s transport did not finish within "
                "the %.1f s close deadline",
                dropped,
                self._kind,
                timeout,
            )
        with self._lock:
            unreported, self._unreported = self._unreported, 0
        if unreported:
            log.warning("OpenLineage: %d more event(s) failed since the last report", unreported)
        return flushed and dropped == 0

    def __enter__(self) -> LineageEmitter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the sending thread ---------------------------------------------------------------

    def _run(self) -> None:
        _QUIET_RETRIES.add(threading.get_ident())
        try:
            self._serve()
        finally:
            _QUIET_RETRIES.discard(threading.get_ident())

    def _serve(self) -> None:
        while True:
            item = self._queue.get()
            try:
                if item is _STOP:
                    self._close_target()
                    return
                error: Exception | None = None
                try:
                    self._send(item)
                except Exception as err:  # any transport failure is counted, never raised
                    error = err
                outcome = "sent" if error is None else "failed"
                with self._lock:
                    if self._abandoned:
                        self._abandoned -= 1
                        continue  # close() counted it as dropped already
                    self._counts[outcome] += 1
                self._notify(outcome)
                if error is not None:
                    self._report(error)
            finally:
                self._queue.task_done()

    def _send(self, event: Event | Callable[[], Event]) -> None:
        if callable(event):  # an event to build here, off the caller's path
            event = event()
        # A client applies its own config (tags, filters, facets) before its transport sends.
        if self._target is not None:
            self._target.emit(event)

    def _close_target(self) -> None:
        deadline = self._close_deadline
        remaining = max(deadline - time.monotonic(), 0.0) if deadline is not None else 0.0
        try:
            if self._target is not None:
                self._target.close(remaining)
        except Exception as err:  # closing is best effort; the process goes on
            log.debug("OpenLineage: closing the transport failed: %s", self._describe(err))

    def _report(self, error: Exception) -> None:
        now = time.monotonic()
        with self._lock:
            if self._last_report is not None and now - self._last_report < REPORT_INTERVAL:
                self._unreported += 1
                return
            since, self._unreported, self._last_report = self._unreported, 0, now
        more = f" ({since} more failed since the last report)" if since else ""
        log.warning(
            "OpenLineage: could not send an event through the %s transport: %s%s",
            self._kind,
            self._describe(error),
            more,
        )

    # -- helpers --------------------------------------------------------------------------

    def _notify(self, outcome: str) -> None:
        if self._on_result is None:
            return
        try:
            self._on_result(outcome)
        except Exception as err:  # a metrics callback must not break sending
            log.debug("OpenLineage: on_result(%r) failed: %s", outcome, err)

    def _wait_empty(self, deadline: float) -> bool:
        if self._thread is None:
            return True
        with self._queue.all_tasks_done:
            while self._queue.unfinished_tasks:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._queue.all_tasks_done.wait(remaining)
        return True

    def _drain(self) -> Iterator[Any]:
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return
            self._queue.task_done()
            yield item

    def _describe(self, error: BaseException) -> str:
        return _redact(f"{type(error).__name__}: {error}", _secrets_of(self._target))


def _transport_of(target: OpenLineageClient | Transport) -> Transport:
    transport = getattr(target, "transport", None)
    return transport if transport is not None else target  # type: ignore[return-value]


def _secrets_of(target: object) -> set[str]:
    """Every credential the transport (or a composite's children) holds, to keep out of logs."""
    found: set[str] = set()
    if target is None:
        return found
    seen: set[int] = set()
    todo: list[object] = [_transport_of(target)]  # type: ignore[arg-type]
    while todo:
        transport = todo.pop()
        if id(transport) in seen:
            continue
        seen.add(id(transport))
        todo.extend(getattr(transport, "transports", None) or ())
        config = getattr(transport, "config", None)
        auth = getattr(config, "auth", None)
        for name in ("api_key", "client_secret", "_cached_token"):
            value = getattr(auth, name, None)
            if isinstance(value, str) and value:
                found.add(value)
        headers = getattr(config, "custom_headers", None) or {}
        found.update(v for v in headers.values() if isinstance(v, str) and v)
        url = getattr(transport, "url", None) or getattr(config, "url", None)
        if isinstance(url, str):
            try:
                password = urlsplit(url).password
            except ValueError:
                password = None
            if password:
                found.update({password, unquote(password)})
    return found


def _redact(text: str, secrets: set[str]) -> str:
    for secret in sorted(secrets, key=len, reverse=True):
        if len(secret) >= 4:  # a one-letter "secret" would blank half the message
            text = text.replace(secret, "***")
    text = _USERINFO.sub("***@", text)
    text = _SECRET_PAIR.sub(lambda m: f"{m.group(1)}{m.group(2)}***", text)
    if len(text) > _MAX_ERROR_TEXT:
        text = text[: _MAX_ERROR_TEXT - 3] + "..."
    return text


class _QuietRetries(logging.Filter):
    """Drops urllib3's per-retry warnings when they come from an emitter's thread.

    The HTTP transport retries five times, and urllib3 warns at each: against a dead backend
    that is five lines per event. The emitter reports the failure itself, rate-limited; other
    threads' urllib3 records pass untouched.
    """

    def __init__(self) -> None:
        super().__init__()
        self._threads: set[int] = set()
        self._lock = threading.Lock()

    def add(self, thread: int) -> None:
        with self._lock:
            self._threads.add(thread)
            logging.getLogger("urllib3.connectionpool").addFilter(self)  # no-op once added

    def discard(self, thread: int) -> None:
        with self._lock:
            self._threads.discard(thread)

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno > logging.WARNING or record.thread not in self._threads


_QUIET_RETRIES = _QuietRetries()


class _FallbackSeen(logging.Filter):
    """Swallows the client's "no configuration, console it is" warning, and remembers it."""

    def __init__(self) -> None:
        super().__init__()
        self.seen = False

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str) and record.msg.startswith(_FALLBACK_WARNING):
            self.seen = True
            return False
        return True


def _client_from_environment() -> tuple[OpenLineageClient, bool]:
    """OpenLineage's client as its configuration makes it, and whether it fell back to console
    because nothing was configured."""
    from openlineage.client import OpenLineageClient
    from openlineage.client.transport.console import ConsoleTransport

    client_log = logging.getLogger("openlineage.client.client")
    seen = _FallbackSeen()
    client_log.addFilter(seen)
    try:
        client = OpenLineageClient()
    except Exception as err:  # the client raises KeyError/ValueError/RuntimeError/TypeError
        detail = _redact(f"{type(err).__name__}: {err}", set())
        raise ConfigError(f"OpenLineage configuration is not usable: {detail}") from err
    finally:
        client_log.removeFilter(seen)
    asked_for = (client.config.transport or {}).get("type")
    fallback = seen.seen or (isinstance(client.transport, ConsoleTransport) and asked_for is None)
    return client, fallback
