"""Shared helpers for the server tests: free ports, a clean environment, servers to talk to.

Imported as ``tests.core.support.serverproc``, by the adapter suites' gate tests too. Nothing
here is a fixture: the fixtures built from these pieces (in the conftest.py of the folder of
their users, or in one test module) stop a failing server in their finalizer and show its
stderr with the failure.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx

from .paths import EXAMPLES as EXAMPLES
from .paths import POLICY as POLICY

SLUICEGATE = str(Path(sys.executable).with_name("sluicegate"))
#: The TLS context of every HTTP client here, made once: httpx makes one for each client
#: otherwise, loading the CA bundle each time (30-50 ms of CPU), for servers that speak http.
TLS = ssl.create_default_context()


def expiring_policy(directory: Path, on_timeout: str) -> Path:
    """examples/policy.yaml with its PII-export rule's timeout cut to 1 s and ``on_timeout`` as
    given, written to ``directory``: a request nobody decides ends within a test."""
    old = "timeout: 24h\n      on_timeout: deny"
    text = POLICY.read_text()
    assert old in text, "the pii-export rule of examples/policy.yaml changed"
    policy = directory / "policy.yaml"
    policy.write_text(text.replace(old, f"timeout: 1s\n      on_timeout: {on_timeout}"))
    return policy


#: The example actions, as a pipeline would send them.
PII_EXPORT: dict[str, Any] = json.loads((EXAMPLES / "actions" / "pii-export.json").read_text())
GRANT: dict[str, Any] = json.loads((EXAMPLES / "actions" / "grant.json").read_text())
ROUTINE_READ: dict[str, Any] = json.loads((EXAMPLES / "actions" / "routine-read.json").read_text())
SECRET_EXPORT: dict[str, Any] = {
    "kind": "export",
    "summary": "Export the API keys",
    "inputs": [{"namespace": "vault://prod", "name": "api_keys", "classifications": ["secret"]}],
    "outputs": [{"namespace": "s3://partner-share", "name": "keys.csv"}],
}


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def shared_secret_key(db_url: str) -> str:
    """The ``SLUICEGATE_SECRET_KEY`` every test server of ``db_url`` gets when it is not
    SQLite (PostgreSQL needs one set, and replicas must share it)."""
    return "test-key-" + hashlib.sha256(db_url.encode()).hexdigest()


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without any SLUICEGATE_* or OPENLINEAGE* variable, plus
    ``extra``."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("SLUICEGATE_", "OPENLINEAGE"))}
    return {**base, **extra}


def cli(
    *args: str, cwd: Path | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run ``sluicegate ARGS`` the way a user does."""
    return subprocess.run(
        [SLUICEGATE, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
        env=clean_env(),
        stdin=subprocess.DEVNULL,
    )


def cli_in_process(
    *args: str, cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``sluicegate ARGS`` through the entry point the script calls (``sluicegate.cli:main``),
    in this process: what :func:`cli` answers, without a Python start and every import per
    call. For a test whose subject is not the script itself (tests/core/cli/test_main.py runs the
    script). It swaps this process's stdout, stderr, environment (no SLUICEGATE_* or
    OPENLINEAGE* variable, plus ``env``) and working folder while it runs: call it from the
    test's thread only, never while another thread prints."""
    from sluicegate.cli import main

    out, err = io.StringIO(), io.StringIO()
    env = env or {}
    saved = {
        k: v
        for k, v in os.environ.items()
        if k.startswith(("SLUICEGATE_", "OPENLINEAGE")) or k in env
    }
    code: object = 0
    try:
        for name in saved:
            del os.environ[name]
        os.environ.update(env)
        with (
            contextlib.chdir(cwd or os.getcwd()),
            contextlib.redirect_stdout(out),
            contextlib.redirect_stderr(err),
        ):
            main(list(args))
    except SystemExit as ended:  # main() always ends with sys.exit
        code = ended.code
    finally:
        for name in env:
            os.environ.pop(name, None)
        os.environ.update(saved)
    returncode = code if isinstance(code, int) else 0 if code is None else 1
    return subprocess.CompletedProcess(
        ["sluicegate", *args], returncode, out.getvalue(), err.getvalue()
    )


def refused_serve(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``sluicegate serve ARGS`` in this process (:func:`cli_in_process`), for a setting that
    ``serve`` must refuse before it serves; where the script's own exit is the subject, run the
    script. A serve that got past its checks does not serve here: it ends in an internal error
    (exit 3) naming that, and the test's expected exit 2 fails."""
    from sluicegate.server import run

    def started(*args: object, **kwargs: object) -> None:
        raise AssertionError("sluicegate serve started serving: it was expected to refuse")

    saved = run.run_server, run.run_workers
    run.run_server = run.run_workers = started
    try:
        return cli_in_process("serve", *args, cwd=cwd, env=env)
    finally:
        run.run_server, run.run_workers = saved


def create_token(
    db_url: str, principal: str, scope: str, cwd: Path | None = None, *, policy: Path = POLICY
) -> str:
    """``sluicegate token create`` (in process): the token alone on stdout. A review token's
    principal is checked against ``policy`` (the example policy by default)."""
    checked = ["--policy", str(policy)] if scope == "review" else []
    proc = cli_in_process(
        "token",
        "create",
        "--db",
        db_url,
        "--principal",
        principal,
        "--scope",
        scope,
        *checked,
        cwd=cwd,
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) == 1, proc.stdout
    return lines[0]


class ServerProcess:
    """``sluicegate serve`` in a subprocess; its stderr goes to a file shown on failure."""

    def __init__(
        self,
        db_url: str,
        policy: Path,
        workdir: Path,
        *,
        name: str = "server",
        port: int = 0,
        workers: int = 1,
        log_level: str = "warning",
        env: dict[str, str] | None = None,
    ) -> None:
        self.workers = workers
        #: Extra environment (OPENLINEAGE_URL, say); the rest is this process's, cleaned.
        self.env = env or {}
        self.log_level = log_level
        self.db_url = db_url
        self.policy = policy
        self.workdir = workdir
        self.name = name
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = workdir / f"{name}-{self.port}.stderr"
        self.proc: subprocess.Popen[bytes] | None = None
        self._starts = 0

    def start(self, timeout: float = 90.0) -> ServerProcess:
        """Start and wait until /healthz answers (or fail with the server's stderr)."""
        self._starts += 1
        log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        log.write(f"--- start #{self._starts}\n".encode())
        log.flush()
        self._log = log
        env = dict(self.env)
        if not self.db_url.startswith("sqlite"):
            # Replicas on one PostgreSQL must sign alike, and the key never lives in the
            # database: every server of this database gets the same key from its URL.
            env.setdefault("SLUICEGATE_SECRET_KEY", shared_secret_key(self.db_url))
        self.proc = subprocess.Popen(
            [
                SLUICEGATE,
                "serve",
                "--db",
                self.db_url,
                "--policy",
                str(self.policy),
                "--port",
                str(self.port),
                "--log-level",
                self.log_level,
                "--workers",
                str(self.workers),
            ],
            cwd=self.workdir,
            env=clean_env(SLUICEGATE_SERVER_URL=f"http://127.0.0.1:{self.port}", **env),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                code = self.proc.returncode
                raise AssertionError(
                    f"{self.name} exited with {code} while starting:\n{self.stderr()}"
                )
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{self.url}/healthz", timeout=1, verify=TLS).status_code == 200:
                    return self
            time.sleep(0.1)
        raise AssertionError(f"{self.name} not ready after {timeout} s:\n{self.stderr()}")

    def stop(self) -> None:
        """Terminate (then kill) the process; safe to call twice."""
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        log = getattr(self, "_log", None)
        if log is not None and not log.closed:
            log.close()

    def kill(self) -> None:
        """SIGKILL, like a crash: no shutdown hooks run."""
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        log = getattr(self, "_log", None)
        if log is not None and not log.closed:
            log.close()

    def stderr(self) -> str:
        """What the server printed so far."""
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return "(no output)"

    def client(self, token: str | None = None) -> httpx.Client:
        """A plain HTTP client on this server with a bearer token."""
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30, verify=TLS)


#: ``start_server(db_url, name=..., policy=..., **options)``: the ``start_server`` fixture.
StartServer = Callable[..., ServerProcess]


def expiring_server(directory: Path, on_timeout: str) -> tuple[ServerProcess, str]:
    """A started server on :func:`expiring_policy` and a fresh SQLite database in ``directory``:
    ``(server, database URL)``. Stop it when done."""
    db = f"sqlite:///{directory}/sluicegate.db"
    policy = expiring_policy(directory, on_timeout)
    return ServerProcess(db, policy, directory, name="expiring").start(), db


class ThreadServer:
    """An ASGI app served by uvicorn in a thread of this process, on a free port."""

    def __init__(self, app: Any) -> None:
        import uvicorn

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(
            app,
            host="127.0.0.1",
            port=self.port,
            log_level="warning",
            lifespan="on",
            access_log=False,
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="uvicorn", daemon=True)

    def __enter__(self) -> ThreadServer:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise AssertionError("the uvicorn thread did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)


@contextlib.contextmanager
def running(*servers: ServerProcess) -> Iterator[None]:
    """Stop every server on the way out; on failure, show what each printed."""
    try:
        yield
    except BaseException:
        for s in servers:
            sys.stderr.write(f"\n===== {s.name} ({s.url}) stderr =====\n{s.stderr()}\n")
        raise
    finally:
        for s in servers:
            s.stop()
