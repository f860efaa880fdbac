"""Shared parts of the server benchmarks (``bench_server.py``, ``bench_longpoll.py``).

- :class:`FreshDatabase`: a fresh SQLite file in a temp dir, or a fresh PostgreSQL schema
  (``?options=-csearch_path%3D<schema>``), removed afterwards;
- :func:`create_token`: ``sluicegate token create`` (the console script);
- :class:`ServerProcess`: ``sluicegate serve`` as a subprocess on a free 127.0.0.1 port, with
  RLIMIT_NOFILE raised, and its CPU time and memory read from ``/proc/<pid>``;
- :class:`RawConn`: a minimal HTTP/1.1 keep-alive client on asyncio streams (much cheaper
  per request than httpx, so the load generator steals less CPU from the server);
- :func:`quiet`: this process's output to a log file (the orchestrator benchmarks);
- small statistics and ``/proc`` helpers.

Not a benchmark itself; nothing here talks to anything but 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

HOST = "127.0.0.1"
REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples"
POLICY = EXAMPLES / "policy.yaml"
CLK_TCK = os.sysconf("SC_CLK_TCK")
REQUESTER = {"orchestrator": "bench", "job": "bench.server", "run_id": "run-1", "step": "gate"}


@contextlib.contextmanager
def quiet(log_path: Path) -> Iterator[None]:
    """Send this process's stdout/stderr (an orchestrator's and its tasks' logs) to
    ``log_path``, at the file-descriptor level, so subprocesses' output goes there too."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with open(log_path, "ab") as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])


# --------------------------------------------------------------------------- limits, /proc


def raise_nofile(target: int = 65536) -> int:
    """Raise this process's RLIMIT_NOFILE (hard too, when allowed); returns the soft limit."""
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    for want in ((target, max(target, hard)), (min(target, hard), hard)):
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, want)
            break
        except (ValueError, OSError):
            continue
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def proc_cpu_seconds(pid: int) -> float:
    """utime + stime of ``pid`` (threads included), in seconds."""
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def proc_status_kib(pid: int | str, field: str) -> int:
    """A ``kB`` field (VmRSS, VmHWM, ...) of ``/proc/<pid>/status``."""
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


def child_pids(pid: int) -> list[int]:
    """The direct children of ``pid`` (from /proc/PID/task/*/children)."""
    found: list[int] = []
    with contextlib.suppress(OSError):
        for tid in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(OSError), open(f"/proc/{pid}/task/{tid}/children") as fh:
                found += [int(x) for x in fh.read().split()]
    return found


def pin(pids: Sequence[int], cpus: set[int]) -> None:
    """Every thread of each of ``pids`` onto ``cpus``: Linux keeps a CPU mask per thread, and a
    thread inherits the mask of the thread that starts it (so pin again after new threads)."""
    for pid in pids:
        with contextlib.suppress(OSError):
            for tid in os.listdir(f"/proc/{pid}/task"):
                with contextlib.suppress(OSError):  # that thread has just ended
                    os.sched_setaffinity(int(tid), cpus)


def proc_threads(pid: int) -> int:
    return proc_status_kib(pid, "Threads")


def machine_cpu() -> tuple[float, float]:
    """(busy, total) jiffies of the whole machine, from /proc/stat."""
    with open("/proc/stat") as fh:
        vals = [int(v) for v in fh.readline().split()[1:]]
    idle = vals[3] + (vals[4] if len(vals) > 4 else 0)
    return float(sum(vals) - idle), float(sum(vals))


def mib(kib: float) -> str:
    return f"{kib / 1024:.0f} MiB"


# --------------------------------------------------------------------------- statistics


def pct(sorted_vals: Sequence[float], p: float) -> float:
    """Nearest-rank percentile of an already sorted sequence (nan when empty)."""
    if not sorted_vals:
        return float("nan")
    k = max(0, min(len(sorted_vals) - 1, round(p / 100 * len(sorted_vals) + 0.5) - 1))
    return sorted_vals[k]


def say(*parts: object) -> None:
    """Print at once: a long benchmark shows its progress as it goes."""
    print(*parts, flush=True)


def load_average() -> str:
    """The 1, 5 and 15-minute load averages, for the figures' context."""
    return " / ".join(f"{x:.2f}" for x in os.getloadavg())


def row_ms(name: str, values: Sequence[float]) -> str:
    """One line: ``name``, n, p50, p95 and max of ``values`` (seconds) in milliseconds."""
    s = sorted(values)
    return (
        f"  {name:<44} n {len(s):>3}  p50 {pct(s, 50) * 1e3:8.1f}  p95 {pct(s, 95) * 1e3:8.1f}  "
        f"max {s[-1] * 1e3:8.1f} ms"
    )


def timed_imports(n: int, env: dict[str, str], script: str) -> list[tuple[float, ...]]:
    """Run ``script`` in ``n`` fresh interpreters; the seconds each printed on its one line."""
    out = []
    for _ in range(n):
        done = subprocess.run(
            [sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True
        )
        out.append(tuple(float(x) for x in done.stdout.split()))
    return out


def summary_ms(latencies_s: Sequence[float]) -> str:
    """``p50 / p95 / p99 / max`` in milliseconds."""
    s = sorted(latencies_s)
    if not s:
        return "no samples"
    return (
        f"p50 {pct(s, 50) * 1e3:7.1f}  p95 {pct(s, 95) * 1e3:7.1f}  "
        f"p99 {pct(s, 99) * 1e3:7.1f}  max {s[-1] * 1e3:7.1f} ms"
    )


# --------------------------------------------------------------------------- database


def _pg_admin(url: str, sql: str) -> None:
    from sluicegate.store import make_engine

    engine = make_engine(url)
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql(sql)
    finally:
        engine.dispose()


class FreshDatabase:
    """A fresh SQLite file (``db=None``) or PostgreSQL schema, dropped on exit unless kept."""

    def __init__(self, db: str | None, *, keep: bool = False, tag: str = "bench") -> None:
        self.db = db
        self.keep = keep
        self.workdir = tempfile.mkdtemp(prefix=f"sluicegate-{tag}-")
        self.schema: str | None = None
        if db is None:
            self.url = f"sqlite:///{os.path.join(self.workdir, 'sluicegate.db')}"
            self.kind = "sqlite"
            self.where = f"SQLite (WAL) file {self.workdir}/sluicegate.db"
        elif db.split(":", 1)[0].startswith("postgres"):
            self.schema = f"sluicegate_{tag}_{os.getpid()}"
            _pg_admin(db, f'CREATE SCHEMA "{self.schema}"')
            sep = "&" if "?" in db else "?"
            self.url = f"{db}{sep}options=-csearch_path%3D{self.schema}"
            self.kind = "postgresql"
            self.where = f"PostgreSQL, fresh schema {self.schema}"
        else:
            raise SystemExit("--db: give a postgresql:// URL (SQLite is the default)")

    def __enter__(self) -> FreshDatabase:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.keep:
            print(f"kept {self.workdir}" + (f" and schema {self.schema}" if self.schema else ""))
            return
        if self.schema and self.db:
            try:
                _pg_admin(self.db, f'DROP SCHEMA "{self.schema}" CASCADE')
            except Exception as err:  # report, and still remove the temp dir
                print(f"could not drop schema {self.schema}: {err}", file=sys.stderr)
        shutil.rmtree(self.workdir, ignore_errors=True)


def sluicegate_cmd() -> list[str]:
    """The console script next to this interpreter (else on PATH)."""
    here = Path(sys.executable).parent / "sluicegate"
    if here.exists():
        return [str(here)]
    found = shutil.which("sluicegate")
    if found:
        return [found]
    raise SystemExit("the sluicegate console script is not installed")


def secret_key(url: str) -> str:
    """The ``SLUICEGATE_SECRET_KEY`` of the benchmark's servers on ``url`` (PostgreSQL needs
    one, the same for every replica; the server never keeps it in the database)."""
    return "bench-key-" + hashlib.sha256(url.encode()).hexdigest()


def create_token(url: str, principal: str, scope: str) -> str:
    """``sluicegate token create --db URL --principal P --scope S``; returns the token. A
    review token's principal is checked against the example policy."""
    checked = ["--policy", str(POLICY)] if scope == "review" else []
    out = subprocess.run(
        [*sluicegate_cmd(), "token", "create", "--db", url, "--principal", principal,
         "--scope", scope, *checked],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    if out.returncode != 0:
        raise SystemExit(f"token create failed: {out.stderr.strip()}")
    return out.stdout.strip().splitlines()[-1]


# --------------------------------------------------------------------------- server


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def _child_setup() -> None:  # preexec_fn: runs in the server child before exec
    raise_nofile()
    os.setsid()  # its own process group, so a stop reaches only it


class ServerProcess:
    """``sluicegate serve`` on a free port; stderr goes to a log file in ``logdir``."""

    def __init__(
        self,
        url: str,
        logdir: str,
        *,
        policy: Path = POLICY,
        log_level: str = "info",
        n: int = 0,
        env: dict[str, str] | None = None,
        workers: int = 1,
        command: Sequence[str] | None = None,
    ) -> None:
        """``command``: what runs in place of the ``sluicegate`` console script (its arguments
        follow: ``serve --db ...``)."""
        self.port = free_port()
        self.log_path = os.path.join(logdir, f"server-{n}.log")
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        env = {**os.environ, **(env or {})}
        env["SLUICEGATE_SERVER_URL"] = f"http://{HOST}:{self.port}"
        if not url.startswith("sqlite"):
            env.setdefault("SLUICEGATE_SECRET_KEY", secret_key(url))
        cmd = [*(command or sluicegate_cmd()), "serve", "--db", url, "--policy", str(policy),
               "--host", HOST, "--port", str(self.port), "--log-level", log_level,
               "--workers", str(workers)]  # fmt: skip
        self.proc = subprocess.Popen(
            cmd, stdout=self._log, stderr=subprocess.STDOUT, env=env, preexec_fn=_child_setup
        )
        self.pid = self.proc.pid

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Until ``/healthz`` answers 200 (bounded)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"server exited ({self.proc.returncode}):\n{self.log_tail()}")
            try:
                with socket.create_connection((HOST, self.port), timeout=1) as s:
                    s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                    if s.recv(64).startswith(b"HTTP/1.1 200"):
                        return
            except OSError:
                pass
            time.sleep(0.1)
        raise SystemExit(f"server not ready after {timeout:.0f} s:\n{self.log_tail()}")

    def log_tail(self, lines: int = 30) -> str:
        with contextlib.suppress(OSError), open(self.log_path, errors="replace") as fh:
            return "".join(fh.readlines()[-lines:])
        return ""

    def pids(self) -> list[int]:
        """This server's process and its children (``serve --workers``)."""
        return [self.pid, *child_pids(self.pid)]

    def cpu(self) -> float:
        total = 0.0
        for pid in self.pids():
            with contextlib.suppress(OSError, ValueError, IndexError):
                total += proc_cpu_seconds(pid)
        return total

    def rss_kib(self) -> int:
        total = 0
        for pid in self.pids():
            with contextlib.suppress(OSError, ValueError):
                total += proc_status_kib(pid, "VmRSS")
        return total

    def hwm_kib(self) -> int:
        return proc_status_kib(self.pid, "VmHWM")

    def stop(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self._log.close()

    def errors_logged(self) -> int:
        """Lines at ERROR level or with a traceback in the server's log."""
        n = 0
        with contextlib.suppress(OSError), open(self.log_path, errors="replace") as fh:
            for line in fh:
                if " ERROR " in line or line.startswith("Traceback"):
                    n += 1
        return n


# --------------------------------------------------------------------------- requests


def templates() -> dict[str, str]:
    """Gate bodies (examples/actions) with a ``%s`` where the idempotency key goes:
    ``pending`` (a PII export: a new request) and ``allowed`` (a routine read)."""
    import json

    out = {}
    for kind, name in (("pending", "pii-export.json"), ("allowed", "routine-read.json")):
        action = json.loads((EXAMPLES / "actions" / name).read_text())
        body = {"idempotency_key": "@@KEY@@", "action": action, "requester": REQUESTER}
        text = json.dumps(body, separators=(",", ":")).replace("%", "%%")
        out[kind] = text.replace("@@KEY@@", "%s")
    return out


def seed_pending(port: int, token: str, n: int, concurrency: int = 50) -> list[str]:
    """Open ``n`` pending requests through the API (``concurrency`` connections); their ids."""
    import json
    import uuid

    template = templates()["pending"]
    ids: list[str] = []
    tag = uuid.uuid4().hex[:8]
    todo = iter(range(n))

    async def one() -> None:
        conn = RawConn(HOST, port, auth=token)
        try:
            for i in todo:
                status, body = await conn.request(
                    "POST", "/api/v1/requests", (template % f"seed-{tag}-{i}").encode()
                )
                if status != 201:
                    raise SystemExit(f"seeding: {status} {body[:300]!r}")
                ids.append(json.loads(body)["id"])
        finally:
            conn.close()

    async def go() -> None:
        await asyncio.gather(*(one() for _ in range(min(concurrency, max(1, n)))))

    run(go())
    return ids


# --------------------------------------------------------------------------- raw HTTP client


class HTTPError(Exception):
    """The connection failed or the response could not be read."""


class RawConn:
    """One HTTP/1.1 keep-alive connection on asyncio streams; reconnects when closed.

    Only what the benchmarks need: Content-Length or chunked bodies, no redirects, no TLS.
    """

    def __init__(self, host: str, port: int, *, auth: str | None = None) -> None:
        self.host = host
        self.port = port
        self._prefix = f"Host: {host}:{port}\r\n".encode()
        if auth:
            self._prefix += f"Authorization: Bearer {auth}\r\n".encode()
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.connects = 0

    async def connect(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        self.connects += 1

    def close(self) -> None:
        if self.writer is not None:
            with contextlib.suppress(Exception):
                self.writer.close()
        self.reader = self.writer = None

    def send(self, method: str, path: str, body: bytes | None = None) -> None:
        """Write one request (the connection must be open)."""
        assert self.writer is not None
        head = f"{method} {path} HTTP/1.1\r\n".encode() + self._prefix
        if body is not None:
            head += b"Content-Type: application/json\r\nContent-Length: %d\r\n" % len(body)
        self.writer.write(head + b"\r\n" + (body or b""))

    async def recv(self) -> tuple[int, bytes]:
        """Read one whole response: (status, body)."""
        assert self.reader is not None
        try:
            raw = await self.reader.readuntil(b"\r\n\r\n")
            status = int(raw[9:12])
            length = -1
            chunked = close = False
            for line in raw.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                name = name.strip().lower()
                if name == b"content-length":
                    length = int(value)
                elif name == b"transfer-encoding" and b"chunked" in value.lower():
                    chunked = True
                elif name == b"connection" and b"close" in value.lower():
                    close = True
            if chunked:
                parts = []
                while True:
                    size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16)
                    if size == 0:
                        await self.reader.readuntil(b"\r\n")
                        break
                    parts.append(await self.reader.readexactly(size + 2))
                data = b"".join(p[:-2] for p in parts)
            elif length >= 0:
                data = await self.reader.readexactly(length)
            else:
                data = await self.reader.read()
                close = True
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError) as e:
            self.close()
            raise HTTPError(f"{type(e).__name__}: {e}") from e
        if close:
            self.close()
        return status, data

    async def request(self, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
        """Send one request and read its whole response: (status, body)."""
        if self.writer is None:
            await self.connect()
        try:
            self.send(method, path, body)
        except OSError as e:
            self.close()
            raise HTTPError(f"{type(e).__name__}: {e}") from e
        return await self.recv()


async def raw_get_json(port: int, path: str, auth: str | None = None) -> Any:
    """One GET on a fresh connection; the JSON body (raises on non-200)."""
    import json

    conn = RawConn(HOST, port, auth=auth)
    try:
        status, body = await conn.request("GET", path)
    finally:
        conn.close()
    if status != 200:
        raise HTTPError(f"GET {path}: {status} {body[:200]!r}")
    return json.loads(body)


def metric_value(text: str, name: str) -> float | None:
    """A sample's value from a Prometheus text exposition (first line with that name)."""
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    return None


def run(coro: Any) -> Any:
    """Run ``coro`` on uvloop when it is installed (it is, with uvicorn[standard])."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)


def loop_name() -> str:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return "asyncio"
    return "uvloop"


# --------------------------------------------------------------------------- profiling


def py_spy_path() -> str | None:
    here = Path(sys.executable).parent / "py-spy"
    return str(here) if here.exists() else shutil.which("py-spy")


def start_py_spy(pid: int, seconds: float, out: str, rate: int = 200) -> subprocess.Popen[bytes]:
    """``py-spy record --gil`` of ``pid`` for ``seconds`` into ``out`` (collapsed stacks).

    ``--gil``: only the thread holding the GIL is sampled, so the samples show where the
    server's one usable core goes.
    """
    exe = py_spy_path()
    if exe is None:
        raise SystemExit("py-spy is not installed (uv pip install py-spy)")
    cmd = [exe, "record", "--pid", str(pid), "--duration", str(max(1, int(seconds))),
           "--rate", str(rate), "--format", "raw", "--gil", "--nonblocking", "-o", out]  # fmt: skip
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


_BUCKETS = (
    ("sluicegate/store/audit", "sluicegate.store.audit"),
    ("sluicegate/store", "sluicegate.store"),
    ("sluicegate/policy", "sluicegate.policy"),
    ("sluicegate/server", "sluicegate.server"),
    ("sluicegate/", "sluicegate (other)"),
    ("sqlalchemy/", "sqlalchemy"),
    ("psycopg/", "psycopg"),
    ("sqlite3/", "sqlite3"),
    ("pydantic", "pydantic"),
    ("fastapi/", "fastapi"),
    ("starlette/", "starlette"),
    ("anyio/", "anyio"),
    ("uvicorn/", "uvicorn"),
    ("asyncio/", "asyncio"),
    ("logging/", "logging"),
    ("json/", "json"),
    ("threading.py", "threading"),
    ("concurrent/", "concurrent"),
    ("uuid.py", "uuid"),
)


def _bucket(frame: str) -> str:
    for needle, name in _BUCKETS:
        if needle in frame:
            return name
    return "other"


def summarise_profile(path: str, top: int = 14, focus: Sequence[str] = ()) -> str:
    """Where the samples of a ``py-spy --format raw`` file go: by library and by function.

    Self time is charged to the innermost Python frame (C code called from it included);
    inclusive time counts each function once per stack.
    """
    import re
    from collections import Counter

    strip = re.compile(r":\d+\)$")
    total = 0
    by_lib: Counter[str] = Counter()
    self_fn: Counter[str] = Counter()
    incl: Counter[str] = Counter()
    try:
        fh = open(path, errors="replace")  # noqa: SIM115
    except OSError:
        return f"(no profile at {path})"
    with fh:
        for line in fh:
            stack, _, n = line.rstrip("\n").rpartition(" ")
            if not stack or not n.isdigit():
                continue
            count = int(n)
            frames = [strip.sub(")", f) for f in stack.split(";")[1:]]  # drop the thread
            if not frames:
                continue
            total += count
            by_lib[_bucket(frames[-1])] += count
            self_fn[frames[-1]] += count
            for f in set(frames):
                incl[f] += count
    if not total:
        return "(no samples)"

    def short(f: str) -> str:
        fn, _, where = f.partition(" (")
        where = where.rstrip(")")
        for marker in ("site-packages/", "/src/", "/lib/python3"):
            if marker in where:
                where = where.split(marker, 1)[1]
                break
        return f"{fn} ({where})"

    lines = [f"{total} samples (GIL held)"]
    lines.append("  self time by library: " + ", ".join(
        f"{k} {v / total:.0%}" for k, v in by_lib.most_common(12)))  # fmt: skip
    lines.append("  inclusive, top functions:")
    shown = 0
    for f, v in incl.most_common():
        if any(x in f for x in ("<module>", "_bootstrap", "run (threading", "worker (anyio")):
            continue
        if focus and not any(x in f for x in focus):
            continue
        lines.append(f"    {v / total:5.1%}  {short(f)}")
        shown += 1
        if shown >= top:
            break
    lines.append("  self, top functions:")
    for f, v in self_fn.most_common(top):
        lines.append(f"    {v / total:5.1%}  {short(f)}")
    return "\n".join(lines)
