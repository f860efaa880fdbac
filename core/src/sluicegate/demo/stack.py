"""What ``sluicegate demo --with`` hands an orchestrator's part of the demo: the :class:`Stack`
of processes it started (the approval server, its tokens), through which that part starts its
own, so that every one of them is stopped when the demo ends, fails or is interrupted.

The orchestrators' parts live in their adapters (found through the ``sluicegate.demos`` entry
point group, :mod:`sluicegate.demo.orchestrated`); this module is the one they import.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sluicegate.demo import (
    approver_argv,
    eligible_reviewers,
    free_port,
    print_review,
)
from sluicegate.exceptions import SluicegateError

__all__ = ["STOP_GRACE", "DemoFailed", "Stack"]

#: How long a stopped process group gets between SIGTERM and SIGKILL.
STOP_GRACE = 10.0


class DemoFailed(SluicegateError):
    """The demo could not go on; the message is the one-line reason (the CLI exits 1)."""


@dataclass
class _Spawned:
    name: str
    proc: subprocess.Popen[bytes]
    log: Path


@dataclass
class Stack:
    """What `demo --with` started before the orchestrator: the approval server and its tokens."""

    server_url: str  # the approval server, a real `sluicegate serve` subprocess on SQLite
    request_token: str  # a request-scoped token for the pipeline (SLUICEGATE_TOKEN)
    review_tokens: dict[str, str]  # reviewer id -> review token, every reviewer in the policy
    db_url: str
    policy_path: Path
    workdir: Path  # a fresh folder for the orchestrator's home and logs (kept after)
    examples: Path  # the folder holding the example pipelines
    echo: Callable[[str], None]
    #: Reviewers who approve from a second process (empty: a human decides).
    approve_as: Sequence[str] = ()
    #: The key the server signs review links with (the SQLite file's key, or the configured one).
    link_key: bytes = b""
    #: What the orchestrator's module adds to the approval server's environment, asked before
    #: the server starts: its optional ``server_env(stack) -> dict`` (e.g. Prefect's API URL).
    server_env: dict[str, str] = field(default_factory=dict)
    _spawned: list[_Spawned] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    # ------------------------------------------------------------------ processes

    def free_port(self) -> int:
        """A TCP port free on 127.0.0.1 now."""
        return free_port()

    def spawn(
        self,
        name: str,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
    ) -> subprocess.Popen[bytes]:
        """Start a process in its own session, output to workdir/<name>.log; stopped (SIGTERM to
        its group, then SIGKILL after 10 s) when the demo ends, fails or gets Ctrl-C.

        ``env`` is added to this process's environment (not a replacement of it). Each start
        is recorded in workdir/processes.log (pid, which is also its process group, and name).
        """
        log = self.workdir / f"{name}.log"
        with self._lock, open(log, "ab") as out:
            # Its own session: a terminal's Ctrl-C reaches the demo only, which then stops the
            # whole group, children the process started included.
            proc = subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, **env} if env is not None else None,
                cwd=cwd,
                start_new_session=True,
            )
            self._spawned.append(_Spawned(name, proc, log))
            with open(self.workdir / "processes.log", "a") as record:
                record.write(f"{proc.pid} {name} {shlex.quote(argv[0])}\n")
        return proc

    def stop_all(self) -> None:
        """Stop every spawned process group, the last started first: SIGTERM, then SIGKILL
        to any group still alive after the grace period."""
        with self._lock:
            spawned = list(reversed(self._spawned))
        for item in spawned:
            _signal_group(item.proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE
        try:
            while time.monotonic() < deadline and any(_group_alive(s.proc) for s in spawned):
                time.sleep(0.1)
        except KeyboardInterrupt:  # a second Ctrl-C: no more grace
            pass
        with _no_interrupts():  # a third one must not leave the rest running
            for item in spawned:
                _signal_group(item.proc.pid, signal.SIGKILL)
            for item in spawned:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    item.proc.wait(timeout=5)

    def log_tail(self, name: str, lines: int = 15) -> list[str]:
        """The last lines of workdir/<name>.log (empty when there is none)."""
        try:
            text = (self.workdir / f"{name}.log").read_text(errors="replace")
        except OSError:
            return []
        return text.splitlines()[-lines:]

    def wait_http(self, url: str, *, timeout: float, what: str, log: str | None = None) -> None:
        """Poll until the URL answers < 500; on timeout raise DemoFailed naming `what` and the
        last lines of the matching log.

        The matching log is ``log`` (a name given to :meth:`spawn`), else the one named
        ``what``, else the last process started; when that process exits meanwhile, this
        fails at once.
        """
        import httpx

        watched = self._find(log or what)
        deadline = time.monotonic() + timeout
        while True:
            try:
                if httpx.get(url, timeout=5.0).status_code < 500:
                    return
            except httpx.HTTPError:
                pass
            if watched is not None and watched.proc.poll() is not None:
                self._fail(
                    f"{what} exited (code {watched.proc.returncode}) before {url} answered",
                    watched,
                )
            if time.monotonic() > deadline:
                self._fail(f"{what} did not answer at {url} within {timeout:.0f} s", watched)
            time.sleep(0.25)

    def _find(self, name: str) -> _Spawned | None:
        with self._lock:
            for item in reversed(self._spawned):
                if item.name == name:
                    return item
            return self._spawned[-1] if self._spawned else None

    def _fail(self, reason: str, spawned: _Spawned | None) -> None:
        if spawned is not None:
            tail = self.log_tail(spawned.name)
            if tail:
                self.echo(f"last lines of {spawned.log}:")
                for line in tail:
                    self.echo(f"  | {line}")
            reason = f"{reason} (log: {spawned.log})"
        raise DemoFailed(reason)

    # ------------------------------------------------------------------ the gate

    def _client(self, token: str) -> Any:
        from sluicegate.client import SluicegateClient

        return SluicegateClient(self.server_url, token)

    def wait_for_request(self, *, timeout: float) -> dict[str, Any]:
        """The first pending request (API JSON), once the pipeline's gate has opened it."""
        deadline = time.monotonic() + timeout
        with self._client(self.request_token) as client:
            while True:
                page = client.list(status="pending", limit=50)
                if page.items:
                    first = page.items[-1]  # newest first: the last is the first opened
                    return dict(first.model_dump(mode="json"))
                if time.monotonic() > deadline:
                    raise DemoFailed(
                        f"the pipeline opened no request at the gate within {timeout:.0f} s "
                        f"(logs in {self.workdir})"
                    )
                time.sleep(0.5)

    def eligible(self, request: Mapping[str, Any]) -> list[str]:
        """The reviewers who may decide ``request`` (never its requester, owner or trigger)."""
        from sluicegate.policy import load_policy

        return eligible_reviewers(
            load_policy(self.policy_path),
            list(request.get("groups") or []),
            request.get("requester"),
        )

    def review(self, request: Mapping[str, Any]) -> None:
        """Print the review links (signed, one per eligible reviewer), the ready CLI commands
        (Part 1's), and either approve as --approve-as reviewers (from a second process, as
        the plain demo does) or say it waits for a human."""
        request_id = str(request["id"])
        eligible = self.eligible(request)
        self.echo(
            f"the gate halts the pipeline: request {request_id}, rule {request.get('rule')!r}, "
            f"{request.get('required_approvals')} approvals needed from "
            f"{', '.join(request.get('groups') or [])}"
        )
        print_review(
            self.echo,
            server_url=self.server_url,
            request_id=request_id,
            review_url=str(request.get("review_url") or f"{self.server_url}/requests/{request_id}"),
            key=self.link_key,
            reviewers=eligible,
            tokens=self.review_tokens,
            indent="  ",
        )
        for reviewer in self.approve_as:
            if reviewer not in eligible:  # the server refuses them; say so rather than hang
                self.echo(
                    f"note: {reviewer} may not decide this request (not an eligible reviewer)"
                )
        if self.approve_as:
            tokens = [self.review_tokens[r] for r in self.approve_as]
            argv, env = approver_argv(self.server_url, request_id, tokens, pause=0.3)
            self.spawn("approver", argv, env=env)
            self.echo(f"{', '.join(self.approve_as)} will approve from a second process")
        else:
            self.echo("waiting for a reviewer to decide (a link above, or a command)...")

    def wait_decided(self, request_id: str, *, timeout: float) -> str:
        """Long-poll until the request is decided (or expired); its final status."""
        deadline = time.monotonic() + timeout
        with self._client(self.request_token) as client:
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise DemoFailed(f"nobody decided request {request_id} within {timeout:.0f} s")
                answer = client.wait(request_id, timeout=max(1.0, min(left, 30.0)))
                if answer.terminal:
                    return str(answer.status)


@contextlib.contextmanager
def _no_interrupts() -> Iterator[None]:
    """Ctrl-C and SIGTERM ignored for a moment (only the main thread can say so)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.signal(s, signal.SIG_IGN) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _group_alive(proc: subprocess.Popen[bytes]) -> bool:
    """True while any process of ``proc``'s group lives (its leader reaped when it exits, so
    that a zombie does not count)."""
    proc.poll()
    try:
        os.killpg(proc.pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
