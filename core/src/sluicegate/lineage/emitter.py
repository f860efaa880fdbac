"""Send OpenLineage events without ever holding the caller: bounded queues, one thread each.

(Longer than 400 lines on purpose: the emitter's one promise, that every event ends as exactly
one of sent, failed or dropped for each backend, is kept jointly by its queues, its sender
threads, its backoff and its shutdown; the secret redaction and log filters at the end serve
only it.)

openlineage-python's ``emit()`` is synchronous and raises: its HTTP transport retries with
backoff (about 9 s against a dead backend) and then raises. :class:`LineageEmitter` puts each
event on a queue and returns at once; a daemon thread per backend sends them.

**Each backend on its own.** A composite transport (Marquez beside Sluicegate's own receiver,
say) is split into its children, each with its own queue and thread, so that one backend that
is down costs the others nothing. (Only the composite that sends every event everywhere, its
default; a composite told to stop at the first success or failure stays one backend.)

**A backend that fails is probed, not hammered.** After a failed send (no answer, a timeout, a
5xx) its next send waits :data:`BACKOFF_INITIAL` seconds, doubling per failure up to
:data:`BACKOFF_MAX`; meanwhile its events wait in its queue, and the first send that succeeds
lets them all go. So a dead backend costs one attempt per backoff period, not one per event,
and an outage shorter than its queue loses only the events tried during it. A backend that
answers 4xx is up and refusing that one event: no backoff.

**The newest events are kept.** A backend's queue holds ``max_queue`` events; when it is full
the oldest waiting event makes room for the new one (``dropped``, reason ``queue_full``).

Every event handed to an enabled emitter ends, for each backend, as exactly one of ``sent``,
``failed`` or ``dropped`` (see :attr:`LineageEmitter.counts`, ``on_result`` and ``on_drop``),
except one a client's own ``filters`` leave out on purpose, which counts as nothing.

Configuration is OpenLineage's own (:meth:`LineageEmitter.from_environment`): the client's
resolution of ``OPENLINEAGE_DISABLED``, ``openlineage.yml`` (``OPENLINEAGE_CONFIG``, ``./``,
``~/.openlineage/``), ``OPENLINEAGE__TRANSPORT__*`` and ``OPENLINEAGE_URL`` (with
``OPENLINEAGE_API_KEY``, ``OPENLINEAGE_ENDPOINT``), with one difference: when nothing at all is
configured, the emitter is disabled instead of printing every event to the console.

A failed send is logged once per :data:`REPORT_INTERVAL` on logger ``sluicegate.lineage``,
with how many failed since, and with every credential the transport holds (API key, token,
URL password, custom header values) masked. urllib3's own warning at each retry is dropped
for the emitter's threads only, so a dead backend does not write five lines per event.
"""

from __future__ import annotations

import copy
import logging
import os
import re
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

from sluicegate.exceptions import ConfigError

if TYPE_CHECKING:
    from openlineage.client import OpenLineageClient
    from openlineage.client.client import Event
    from openlineage.client.transport import Transport

__all__ = [
    "BACKOFF_INITIAL",
    "BACKOFF_MAX",
    "DEFAULT_MAX_QUEUE",
    "DROP_REASONS",
    "OUTCOMES",
    "REPORT_INTERVAL",
    "LineageEmitter",
]

log = logging.getLogger("sluicegate.lineage")

#: Events waiting per backend, at most; past that, the oldest waiting one is dropped.
DEFAULT_MAX_QUEUE = 10_000

#: What can become of an event: ``on_result`` gets one of these per event and backend.
OUTCOMES = ("sent", "failed", "dropped")

#: Why an event was dropped: ``on_drop`` gets one of these per dropped event and backend.
DROP_REASONS = ("queue_full", "shutdown")

#: Seconds a backend rests after its first failed send; doubled per failure, up to the max.
BACKOFF_INITIAL = 1.0
BACKOFF_MAX = 30.0

#: At most one warning about failed sends per this many seconds.
REPORT_INTERVAL = 10.0

_FALLBACK_WARNING = "Couldn't find any OpenLineage transport configuration"
_MAX_ERROR_TEXT = 300
# 4xx answers that say "later", not "never": the backend is not refusing the event itself.
_TRANSIENT_4XX = frozenset({408, 425, 429})
_USERINFO = re.compile(r"(?<=://)[^/\s@]+@")
_SECRET_PAIR = re.compile(
    r"(?i)\b(authorization|bearer|api[_-]?key|apikey|token|password|secret)\b"
    r"(['\"]?\s*[:=]\s*['\"]?|\s+)[^\s,'\"}&]+"
)


class LineageEmitter:
    """A non-blocking OpenLineage sender.

    :param target: an ``OpenLineageClient`` (events go through its ``emit``, with its facets,
        tags and filters, then to its transport), a bare transport (events go to
        ``transport.emit`` as they are), or ``None`` for a disabled emitter. A client or
        transport of kind ``noop`` also gives a disabled emitter.
    :param max_queue: events waiting per backend at most; when full, the oldest is dropped.
    :param on_result: called with ``"sent"``, ``"failed"`` or ``"dropped"`` per event and
        backend, from a sending thread (``dropped``: from the caller's or closer's); its
        errors are ignored.
    :param on_drop: called with the reason (:data:`DROP_REASONS`) per dropped event and
        backend, beside ``on_result``; its errors are ignored.
    :param disabled_reason: why a ``None`` target is disabled, for :attr:`disabled_reason`.
    :param backoff: the first and the longest rest, in seconds, of a backend that failed.

    ``emit()`` hands the event over: the sending thread may add facets to it (a client does).
    """

    def __init__(
        self,
        target: OpenLineageClient | Transport | None,
        *,
        max_queue: int = DEFAULT_MAX_QUEUE,
        on_result: Callable[[str], None] | None = None,
        on_drop: Callable[[str], None] | None = None,
        disabled_reason: str | None = None,
        backoff: tuple[float, float] = (BACKOFF_INITIAL, BACKOFF_MAX),
    ) -> None:
        if max_queue < 1:
            raise ValueError(f"max_queue must be at least 1, not {max_queue}")
        if not 0 < backoff[0] <= backoff[1]:
            raise ValueError(
                f"backoff must be (first, longest) with 0 < first <= longest: {backoff}"
            )
        self._target = target
        self._max_queue = max_queue
        self._on_result = on_result
        self._on_drop = on_drop
        self._backoff = backoff
        # One lock for the queues and the counts; each backend waits on its own condition.
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._counts = dict.fromkeys(OUTCOMES, 0)
        self._closed = False
        self._stopping = False
        self._close_deadline: float | None = None
        self._last_report: float | None = None
        self._unreported = 0
        kind = _transport_of(target).kind if target is not None else None
        self._kind = kind
        if target is None:
            self._disabled_reason: str | None = disabled_reason or "no target given"
        elif kind == "noop":
            self._disabled_reason = "the OpenLineage transport is noop (OPENLINEAGE_DISABLED?)"
        else:
            self._disabled_reason = None
        self._backends: list[_Backend] = []
        self._prepare: Callable[[Event], Event | None] = _as_is
        if target is not None and self._disabled_reason is None:
            transport = _transport_of(target)
            if transport is not target:  # a client: its processing, then our backends
                self._prepare = _ClientProcessing(target)  # type: ignore[arg-type]
            split = _backends_of(transport)
            for child in split:
                self._backends.append(_Backend(self, child, named=len(split) > 1))
            for backend in self._backends:
                backend.thread.start()

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
        # Where no configuration is to be found, the client would fall back to console: known
        # without importing openlineage-python (~170 ms, requests), which most servers skip.
        fallback = not _configuration_present()
        if not fallback:
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
        """How many (event, backend) pairs were ``sent``, ``failed`` and ``dropped`` so far."""
        with self._lock:
            return dict(self._counts)

    @property
    def queued(self) -> dict[str, int]:
        """Events waiting, by backend (its name in a composite, else its kind)."""
        with self._lock:
            return {b.name: len(b.queue) for b in self._backends}

    def emit(self, event: Event | Callable[[], Event]) -> None:
        """Queue ``event`` for every backend and return at once; never raises, never blocks.

        ``event`` may be a function that builds it: it then runs in a sending thread (once,
        whatever the number of backends), so a caller pays only for queueing (a failure to
        build counts as ``failed``).

        A disabled emitter ignores the event and counts nothing; a full queue drops its oldest
        event to make room, a closed emitter drops this one (counted).
        """
        if self._disabled_reason is not None:
            return
        item = _Item(event)
        with self._lock:
            if self._closed:
                dropped, reason = len(self._backends), "shutdown"
            else:
                dropped, reason = 0, "queue_full"
                for backend in self._backends:
                    if len(backend.queue) >= self._max_queue:
                        backend.queue.popleft()  # the newest say more than the oldest
                        dropped += 1
                    backend.queue.append(item)
                    backend.ready.notify()
            self._counts["dropped"] += dropped
        if dropped:
            self._dropped(dropped, reason)

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until every queued event is sent or failed, at most ``timeout`` seconds.

        Returns True when nothing is left, False at the deadline (a backend resting after a
        failure keeps its events until its next attempt).
        """
        return self._wait_idle(time.monotonic() + max(timeout, 0.0))

    def close(self, timeout: float = 5.0) -> bool:
        """Flush for at most ``timeout`` seconds, then stop the sending threads.

        Returns within the deadline even when a backend hangs: what is still queued then, and
        the events being sent, are counted as dropped (reason ``shutdown``; a thread still
        sending is a daemon and never counts its event again). Returns True when everything
        was sent or failed. Later calls return True at once; :meth:`emit` after close drops.
        """
        deadline = time.monotonic() + max(timeout, 0.0)
        with self._lock:
            if self._closed:
                return True
            self._closed = True
        if not self._backends:
            return True
        flushed = self._wait_idle(deadline)
        with self._lock:
            dropped = 0
            for backend in self._backends:
                dropped += len(backend.queue)
                backend.queue.clear()
                if backend.in_flight:  # counted here; the thread will not count it again
                    backend.abandoned = True
                    dropped += 1
            self._counts["dropped"] += dropped
            self._close_deadline = deadline
            self._stopping = True
            for backend in self._backends:
                backend.ready.notify_all()
        if dropped:
            self._dropped(dropped, "shutdown")
        for backend in self._backends:
            backend.thread.join(max(deadline - time.monotonic(), 0.0))
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

    # -- the sending threads --------------------------------------------------------------

    def _run(self, backend: _Backend) -> None:
        _QUIET_RETRIES.add(threading.get_ident())
        try:
            self._serve(backend)
        finally:
            _QUIET_RETRIES.discard(threading.get_ident())

    def _serve(self, backend: _Backend) -> None:
        while True:
            with self._lock:
                while not self._stopping:
                    if backend.queue:
                        rest = backend.next_attempt - time.monotonic()
                        if rest <= 0:
                            break
                        backend.ready.wait(rest)  # resting after a failure: events wait
                    else:
                        backend.ready.wait()
                if self._stopping:
                    break
                item = backend.queue.popleft()
                backend.in_flight = True
            outcome, error = self._deliver(backend, item)
            with self._lock:
                backend.in_flight = False
                counted = outcome is not None and not backend.abandoned
                backend.abandoned = False
                if counted and outcome is not None:
                    self._counts[outcome] += 1
                self._idle.notify_all()
            if counted and outcome is not None:
                self._notify(outcome)
                if error is not None:
                    self._report(backend, error)
        self._close_transport(backend)

    def _deliver(self, backend: _Backend, item: _Item) -> tuple[str | None, Exception | None]:
        """Send one event to one backend: its outcome (None: a client filter left it out)."""
        event, error = item.get(self._prepare)
        if error is not None:
            return "failed", error  # ours, not the backend's: no rest
        if event is None:
            return None, None
        try:
            backend.transport.emit(event)
        except Exception as err:  # any transport failure is counted, never raised
            if _refused(err):
                backend.healthy()
            else:
                backend.failed(self._backoff)
            return "failed", err
        backend.healthy()
        return "sent", None

    def _close_transport(self, backend: _Backend) -> None:
        deadline = self._close_deadline
        remaining = max(deadline - time.monotonic(), 0.0) if deadline is not None else 0.0
        try:
            backend.transport.close(remaining)
        except Exception as err:  # closing is best effort; the process goes on
            log.debug("OpenLineage: closing the transport failed: %s", self._describe(err))

    def _report(self, backend: _Backend, error: Exception) -> None:
        now = time.monotonic()
        with self._lock:
            if self._last_report is not None and now - self._last_report < REPORT_INTERVAL:
                self._unreported += 1
                return
            since, self._unreported, self._last_report = self._unreported, 0, now
            rest = backend.rest
        more = f" ({since} more failed since the last report)" if since else ""
        later = f"; its next attempt in {rest:g} s, its events wait" if rest else ""
        log.warning(
            "OpenLineage: could not send an event through the %s transport: %s%s%s",
            backend.label,
            self._describe(error),
            more,
            later,
        )

    # -- helpers --------------------------------------------------------------------------

    def _notify(self, outcome: str) -> None:
        if self._on_result is None:
            return
        try:
            self._on_result(outcome)
        except Exception as err:  # a metrics callback must not break sending
            log.debug("OpenLineage: on_result(%r) failed: %s", outcome, err)

    def _dropped(self, count: int, reason: str) -> None:
        for _ in range(count):
            self._notify("dropped")
            if self._on_drop is not None:
                try:
                    self._on_drop(reason)
                except Exception as err:  # a metrics callback must not break sending
                    log.debug("OpenLineage: on_drop(%r) failed: %s", reason, err)

    def _wait_idle(self, deadline: float) -> bool:
        with self._idle:
            while any(b.queue or b.in_flight for b in self._backends):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._idle.wait(remaining)
        return True

    def _describe(self, error: BaseException) -> str:
        return _redact(f"{type(error).__name__}: {error}", _secrets_of(self._target))


class _Backend:
    """One transport's queue, thread and rest after failures (guarded by the emitter's lock,
    but for ``rest`` and ``next_attempt``, which only its own thread writes)."""

    def __init__(self, emitter: LineageEmitter, transport: Transport, *, named: bool) -> None:
        self.transport = transport
        kind = str(transport.kind)
        #: Its name in the composite (or its kind), and how the log names it.
        self.name: str = (transport.name if named else None) or kind
        self.label = f"{kind} ({transport.name})" if named and transport.name else kind
        self.queue: deque[_Item] = deque()
        self.ready = threading.Condition(emitter._lock)
        self.in_flight = False
        self.abandoned = False
        self.rest = 0.0
        self.next_attempt = 0.0
        suffix = f"-{self.name}" if named else ""
        self.thread = threading.Thread(
            target=emitter._run, args=(self,), name=f"sluicegate-lineage{suffix}", daemon=True
        )

    def failed(self, backoff: tuple[float, float]) -> None:
        first, longest = backoff
        self.rest = min(self.rest * 2, longest) if self.rest else first
        self.next_attempt = time.monotonic() + self.rest

    def healthy(self) -> None:
        self.rest = 0.0
        self.next_attempt = 0.0


class _Item:
    """An event as queued for every backend, built (and processed by a client) only once."""

    __slots__ = ("_done", "_error", "_event", "_lock", "_source")

    def __init__(self, source: Event | Callable[[], Event]) -> None:
        self._source: Event | Callable[[], Event] | None = source
        self._lock = threading.Lock()
        self._done = False
        self._event: Event | None = None
        self._error: Exception | None = None

    def get(
        self, prepare: Callable[[Event], Event | None]
    ) -> tuple[Event | None, Exception | None]:
        with self._lock:
            if not self._done:
                source, self._source = self._source, None
                try:
                    event = source() if callable(source) else source
                    self._event = prepare(event) if event is not None else None
                except Exception as err:  # a build or client failure is counted, never raised
                    self._error = err
                self._done = True
        return self._event, self._error


def _as_is(event: Event) -> Event | None:
    return event


class _ClientProcessing:
    """A client's own processing of an event (environment and tag facets, dataset reduction,
    filters), with the send left to the emitter's backends.

    It runs the client's ``emit`` on a shallow copy whose transport only catches the processed
    event, so the client's behaviour is its own, whatever its version does in ``emit``.
    """

    def __init__(self, client: OpenLineageClient) -> None:
        self._caught = threading.local()
        self._client = copy.copy(client)
        self._client.transport = _Catch(self._caught)  # type: ignore[assignment]  # duck-typed

    def __call__(self, event: Event) -> Event | None:
        self._caught.event = None
        self._client.emit(event)
        caught: Event | None = self._caught.event
        self._caught.event = None
        return caught


class _Catch:
    """A transport that keeps the event it is given, in the calling thread."""

    kind = "sluicegate-catch"
    name = None
    priority = 0

    def __init__(self, caught: threading.local) -> None:
        self._caught = caught

    def emit(self, event: Event) -> None:
        self._caught.event = event

    def close(self, timeout: float = -1) -> bool:
        return True


def _backends_of(transport: Transport) -> list[Transport]:
    """The transports sent to independently: a composite that sends every event everywhere
    (its default) is its children, recursively; any other transport is itself."""
    config = getattr(transport, "config", None)
    children = getattr(transport, "transports", None) if transport.kind == "composite" else None
    if (
        children
        and getattr(config, "continue_on_failure", False)
        and getattr(config, "continue_on_success", False)
    ):
        return [leaf for child in children for leaf in _backends_of(child)]
    return [transport]


def _refused(error: Exception) -> bool:
    """Whether the backend answered and refused this one event (a 4xx but "try later")."""
    response = getattr(error, "response", None)
    status = getattr(response, "status_code", None)
    return isinstance(status, int) and 400 <= status < 500 and status not in _TRANSIENT_4XX


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


def _configuration_present() -> bool:
    """Whether any place OpenLineage's client reads its configuration from holds some: an
    ``OPENLINEAGE*`` variable (``OPENLINEAGE_URL``, ``OPENLINEAGE_CONFIG``,
    ``OPENLINEAGE__TRANSPORT__*``, ``OPENLINEAGE_DISABLED``...), ``./openlineage.yml`` or
    ``~/.openlineage/openlineage.yml`` (its ``_find_yaml_config_path``)."""
    if any(name.startswith("OPENLINEAGE") for name in os.environ):
        return True
    home = os.path.join(os.path.expanduser("~/.openlineage"), "openlineage.yml")
    return any(os.path.isfile(path) for path in ("openlineage.yml", home))


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
