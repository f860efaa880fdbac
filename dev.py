#!/usr/bin/env python3
"""Sluicegate developer entry point (standard library only).

    python3 dev.py demo [ARGS...]     install only the demo (.venvs/demo), run `sluicegate demo`
    python3 dev.py demo --with airflow|dagster|prefect [ARGS...]   the same, in that orchestrator
    python3 dev.py test [--only SUITE[,SUITE]] [--serial] [PYTEST ARGS...] [-- PYTEST ARGS...]

`test` runs each suite in its own environment, all installed from the committed uv.lock
(`--locked`: the lock is never rewritten; an outdated lock is an error):

    suite     environment       uv sync selection                                  tests
    core      .venv             --group dev                                        tests/core
    airflow   .venvs/airflow    --package airflow-provider-sluicegate, dev+airflow tests/airflow
    dagster   .venvs/dagster    --package dagster-sluicegate, dev+dagster          tests/dagster
    prefect   .venvs/prefect    --package prefect-sluicegate, dev+prefect          tests/prefect

Airflow and Prefect cannot share an environment, hence one environment per suite. The
adapters are synced with `--package`: with the package-level conflicts in pyproject.toml, uv
installs a conflicting workspace member only when it is selected that way (a bare
`--group airflow` leaves the provider out; uv issue 17017).

It syncs every selected environment first, one after another, then runs the suites' pytest
side by side (`--serial`: one after another), each spread over pytest-xdist workers (SUITES'
`-n`; a `-n 0` among the PYTEST ARGS turns that off). Each suite's output goes to
.test-results/SUITE.log and its JUnit XML to .test-results/SUITE.xml; a line is printed as each
suite starts and ends (with its CPU seconds), followed by its FAILED/ERROR lines if it failed.
The closing table has each suite's sync and test seconds, and one line sums all suites:
`N passed, N failed, N errors, N skipped`, errors being collection and fixture errors (the
JUnit XML's), and a suite that could not run (sync failed, no test collected: pytest exit 5,
pytest crashed) counts as one error, so `0 failed, 0 errors` always means success. It exits
non-zero if anything failed or errored. Ctrl-C stops every suite's process group.

uv is found on PATH or as `python3 -m uv`; if missing it is installed with
`python3 -m pip install --user uv`, falling back to a bootstrap virtualenv in .tools/.
uv never downloads a Python: the system interpreter is used (UV_PYTHON_DOWNLOADS=never).
"""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent
RESULTS = ROOT / ".test-results"
TOOLS = ROOT / ".tools"
UV_REQUIREMENT = "uv>=0.13.9,<0.14"


@dataclass(frozen=True)
class Suite:
    name: str
    env: str  # environment folder, relative to ROOT
    sync: tuple[str, ...]  # `uv sync` selection
    tests: str  # test folder, relative to ROOT
    pytest: tuple[str, ...] = ()  # the suite's own pytest arguments (its xdist workers)


# Workers (pytest-xdist) per suite, measured on a 2-core machine with the four suites side by
# side: the run is CPU-bound there, so each worker must pay for itself (it collects the whole
# suite again, and imports its orchestrator). `--dist loadfile`: a file's tests share one
# worker, so its module fixtures (a server, a migrated Airflow database, a Prefect API) start
# once; `--no-loadscope-reorder`: files are handed out in the order tests/conftest.py gives,
# the longest first. core: 3 (its tests wait on servers and subprocesses they start; it ends
# last); airflow: 2 (its demo tests and its gate tests, minutes each under load, side by side);
# dagster and prefect: 1 (a second worker cost prefect 20 CPU seconds, a second Prefect API,
# and both end well before the core does).
SUITES: dict[str, Suite] = {
    s.name: s
    for s in (
        Suite(
            "core",
            ".venv",
            ("--group", "dev"),
            "tests/core",
            ("-n", "3", "--dist", "loadfile", "--no-loadscope-reorder"),
        ),
        Suite(
            "airflow",
            ".venvs/airflow",
            ("--package", "airflow-provider-sluicegate", "--group", "dev", "--group", "airflow"),
            "tests/airflow",
            ("-n", "2", "--dist", "loadfile", "--no-loadscope-reorder"),
        ),
        Suite(
            "dagster",
            ".venvs/dagster",
            ("--package", "dagster-sluicegate", "--group", "dev", "--group", "dagster"),
            "tests/dagster",
            ("-n", "1", "--dist", "loadfile", "--no-loadscope-reorder"),
        ),
        Suite(
            "prefect",
            ".venvs/prefect",
            ("--package", "prefect-sluicegate", "--group", "dev", "--group", "prefect"),
            "tests/prefect",
            ("-n", "1", "--dist", "loadfile", "--no-loadscope-reorder"),
        ),
    )
}


def say(message: str = "") -> None:
    print(message, flush=True)


def banner(title: str) -> None:
    say()
    say("=" * 78)
    say(f"== {title}")
    say("=" * 78)


# --------------------------------------------------------------------------- uv


def _works(cmd: list[str]) -> bool:
    try:
        done = subprocess.run(
            [*cmd, "--version"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
    except OSError:
        return False
    return done.returncode == 0


def _candidates() -> list[list[str]]:
    found: list[list[str]] = []
    on_path = shutil.which("uv")
    if on_path:
        found.append([on_path])
    found.append([sys.executable, "-m", "uv"])
    bindir = "Scripts" if os.name == "nt" else "bin"
    exe = "uv.exe" if os.name == "nt" else "uv"
    found.append([str(TOOLS / bindir / exe)])
    return found


def _pip_install_uv(python: str, *extra: str) -> subprocess.CompletedProcess[str]:
    """pip install uv, its output captured: shown only when no way to get uv worked."""
    cmd = [python, "-m", "pip", "install", "--quiet", *extra, UV_REQUIREMENT]
    return subprocess.run(cmd, capture_output=True, text=True)


def find_uv() -> list[str]:
    """Return the command that runs uv, installing uv if it is missing.

    Inside a virtualenv uv goes into that virtualenv (pip refuses --user there); else into the
    user site when it is enabled; else, or when that did not give a working uv, into a
    bootstrap virtualenv in .tools/. pip's output is shown only if the last attempt fails.
    """
    import site

    for cmd in _candidates():
        if _works(cmd):
            return cmd
    in_venv = sys.prefix != sys.base_prefix
    if in_venv or site.ENABLE_USER_SITE:
        where = "this virtualenv" if in_venv else "the user site (pip install --user)"
        say(f"dev.py: uv not found; installing '{UV_REQUIREMENT}' into {where}")
        done = _pip_install_uv(sys.executable, *(() if in_venv else ("--user",)))
        if done.returncode == 0:
            user_bin = Path(site.getuserbase()) / ("Scripts" if os.name == "nt" else "bin") / "uv"
            for cmd in [*_candidates(), [str(user_bin)]]:
                if _works(cmd):
                    return cmd
    say(f"dev.py: installing uv into a bootstrap virtualenv in {TOOLS}")
    made = subprocess.run(
        [sys.executable, "-m", "venv", str(TOOLS)], capture_output=True, text=True
    )
    if made.returncode != 0:
        say(made.stdout + made.stderr)
        sys.exit(f"dev.py: could not create {TOOLS} (is the python3 venv module installed?)")
    bindir = TOOLS / ("Scripts" if os.name == "nt" else "bin")
    tools_python = bindir / ("python.exe" if os.name == "nt" else "python")
    done = _pip_install_uv(str(tools_python))
    if done.returncode != 0:
        say(done.stdout + done.stderr)
        sys.exit("dev.py: could not install uv; install it yourself (pip install uv)")
    cmd = [str(bindir / ("uv.exe" if os.name == "nt" else "uv"))]
    if not _works(cmd):
        sys.exit(f"dev.py: uv installed in {TOOLS} but does not run")
    return cmd


def uv_env(project_environment: str) -> dict[str, str]:
    env = dict(os.environ)
    # Settings from the caller's shell that would change what gets installed or used.
    for name in ("VIRTUAL_ENV", "UV_FROZEN", "UV_NO_SYNC", "UV_LOCKED", "UV_PYTHON_DOWNLOADS"):
        env.pop(name, None)
    env["UV_PYTHON_DOWNLOADS"] = "never"
    env["UV_PROJECT_ENVIRONMENT"] = str(ROOT / project_environment)
    # pyproject.toml declares conflicts between workspace members, a uv preview feature.
    env["UV_PREVIEW_FEATURES"] = "package-conflicts"
    return env


def run(cmd: list[str], env: dict[str, str]) -> int:
    say("$ " + " ".join(cmd))
    try:
        return subprocess.run(cmd, cwd=ROOT, env=env).returncode
    except KeyboardInterrupt:
        return 130


# ------------------------------------------------------------------------- demo


# `demo --with X`: X's adapter (synced with --package, see the module docstring) and X's group.
DEMO_ADAPTERS = {
    "airflow": "airflow-provider-sluicegate",
    "dagster": "dagster-sluicegate",
    "prefect": "prefect-sluicegate",
}


def _demo_orchestrator(args: list[str]) -> str | None:
    """The X of `--with X` / `--with=X` in the demo's arguments, or None."""
    for i, arg in enumerate(args):
        if arg == "--with" and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith("--with="):
            return arg.partition("=")[2]
    return None


def _run_demo(cmd: list[str]) -> int:
    """Run the demo in its own process group, so that a Ctrl-C reaches it once, from here:
    the demo then stops everything it started before it exits (never killed mid-way)."""
    import shlex
    import signal

    say("$ " + shlex.join(cmd))
    proc = subprocess.Popen(cmd, cwd=ROOT, start_new_session=True)
    while True:
        try:
            return proc.wait()
        except KeyboardInterrupt:
            proc.send_signal(signal.SIGINT)


def cmd_demo(args: list[str]) -> int:
    """Install only what the demo needs into an environment of its own (.venvs/demo, or
    .venvs/demo-X for `--with X`), then run `sluicegate demo ARGS` from it."""
    orchestrator = _demo_orchestrator(args)
    sync = ["--no-default-groups", "--group", "demo"]
    folder = ".venvs/demo"
    if orchestrator is not None:
        if orchestrator not in DEMO_ADAPTERS:
            say(f"dev.py: --with {orchestrator}: choose one of {', '.join(DEMO_ADAPTERS)}")
            return 2
        folder = f".venvs/demo-{orchestrator}"
        sync = ["--package", DEMO_ADAPTERS[orchestrator], *sync, "--group", orchestrator]
        if not any(a == "--examples" or a.startswith("--examples=") for a in args):
            args = [*args, "--examples", str(ROOT / "examples")]
    uv = find_uv()
    banner(f"demo: installing what the demo needs ({folder})")
    rc = run([*uv, "sync", "--locked", "--compile-bytecode", *sync], uv_env(folder))
    if rc != 0:
        say(f"dev.py: uv sync failed (exit {rc})")
        return rc
    bindir = ROOT / folder / ("Scripts" if os.name == "nt" else "bin")
    banner("demo: sluicegate demo " + " ".join(args))
    # The environment's own console script, by full path (not `uv run`, which would sync the
    # default groups into it): the commands the demo prints name that same path.
    return _run_demo([str(bindir / "sluicegate"), "demo", *args])


# ------------------------------------------------------------------------- test


@dataclass
class Outcome:
    suite: str
    passed: int = 0
    failed: int = 0
    errors: int = 0
    skipped: int = 0
    ok: bool = False
    notes: list[str] = field(default_factory=list)
    sync_seconds: float = 0.0
    test_seconds: float = 0.0
    #: User + system CPU seconds of pytest and every process it waited for (None: unknown).
    cpu_seconds: float | None = None

    def counted(self) -> tuple[int, int, int, int]:
        """(passed, failed, errors, skipped) for the closing line. A suite that did not succeed
        with no failed or erroring test to show for it (sync failed, nothing collected, pytest
        crashed or was interrupted) counts as one error, so `0 failed, 0 errors` means success."""
        errors = self.errors
        if not self.ok and self.failed + self.errors == 0:
            errors += 1
        return self.passed, self.failed, errors, self.skipped


def read_junit(path: Path) -> tuple[int, int, int, int] | None:
    """(passed, failed, errors, skipped) from a pytest JUnit XML file. ``errors`` are the
    collection errors and the errors in fixtures (setup or teardown), as pytest reports them."""
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError):
        return None
    suites = [root] if root.tag == "testsuite" else root.findall("testsuite")
    tests = failures = errors = skipped = 0
    for s in suites:
        tests += int(s.get("tests", 0))
        failures += int(s.get("failures", 0))
        errors += int(s.get("errors", 0))
        skipped += int(s.get("skipped", 0))
    return tests - failures - errors - skipped, failures, errors, skipped


def sync_suite(uv: list[str], suite: Suite) -> Outcome:
    """Install the suite's environment from the lock; a failure is noted in the Outcome."""
    out = Outcome(suite.name)
    banner(f"suite {suite.name}: environment {suite.env}")
    start = time.monotonic()
    rc = run([*uv, "sync", "--locked", "--compile-bytecode", *suite.sync], uv_env(suite.env))
    out.sync_seconds = time.monotonic() - start
    if rc == 130:  # run() saw Ctrl-C
        out.notes.append("interrupted")
    elif rc != 0:
        out.notes.append(f"uv sync failed (exit {rc})")
    return out


@dataclass
class Running:
    """A suite's pytest, started in a process group of its own (see cmd_test)."""

    suite: Suite
    outcome: Outcome
    proc: subprocess.Popen[bytes]
    started: float
    log: Path
    junit: Path


def start_suite(uv: list[str], suite: Suite, pytest_args: list[str], out: Outcome) -> Running:
    import shlex

    RESULTS.mkdir(exist_ok=True)
    junit = RESULTS / f"{suite.name}.xml"
    log = RESULTS / f"{suite.name}.log"
    junit.unlink(missing_ok=True)
    # --no-sync: `uv run` would otherwise re-sync the environment to the default groups only.
    # The caller's pytest arguments come last, so that `-n 0` (say) overrides the suite's own.
    pytest = ["pytest", suite.tests, *suite.pytest, f"--junitxml={junit}", *pytest_args]
    cmd = [*uv, "run", "--locked", "--no-sync", *pytest]
    with log.open("wb") as sink:
        sink.write(f"$ {shlex.join(cmd)}\n".encode())
        sink.flush()
        proc = subprocess.Popen(
            cmd,
            cwd=ROOT,
            env=uv_env(suite.env),
            stdin=subprocess.DEVNULL,
            stdout=sink,
            stderr=subprocess.STDOUT,
            # Its own process group: the terminal's Ctrl-C reaches dev.py alone, which then
            # stops every suite's whole group (pytest, its workers, the servers they started).
            start_new_session=True,
        )
    say(f"{suite.name:<8} started   {shlex.join(pytest[1:])}  > {log.relative_to(ROOT)}")
    return Running(suite, out, proc, time.monotonic(), log, junit)


def _wait_any(running: list[Running]) -> tuple[Running, float | None]:
    """The next suite to end, and its CPU seconds (its pytest's and every process that pytest
    or its children waited for: the xdist workers, the servers and CLIs the tests ran)."""
    if hasattr(os, "wait4"):
        while True:
            pid, status, usage = os.wait4(-1, 0)
            for r in running:
                if r.proc.pid == pid:
                    r.proc.returncode = os.waitstatus_to_exitcode(status)
                    return r, usage.ru_utime + usage.ru_stime
    while True:  # no wait4 (Windows): no CPU figure
        for r in running:
            if r.proc.poll() is not None:
                return r, None
        time.sleep(0.2)


def _signal_group(proc: subprocess.Popen[bytes], sig: int) -> None:
    if proc.poll() is not None:
        return
    try:
        if hasattr(os, "killpg"):
            os.killpg(proc.pid, sig)
        else:
            proc.terminate()
    except ProcessLookupError:
        pass


def stop_suites(running: list[Running], grace: float = 20.0) -> None:
    """Ctrl-C each suite's process group (pytest stops and runs its teardowns, which stop the
    servers the tests started), then kill what is left after ``grace`` seconds or at a second
    Ctrl-C."""
    import contextlib
    import signal

    for r in running:
        _signal_group(r.proc, signal.SIGINT)
    deadline = time.monotonic() + grace
    with contextlib.suppress(KeyboardInterrupt):
        for r in running:
            with contextlib.suppress(subprocess.TimeoutExpired):
                r.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
    for r in running:
        kill = getattr(signal, "SIGKILL", signal.SIGTERM)
        _signal_group(r.proc, kill)
        r.proc.wait()


def failure_summary(log: Path, limit: int = 30) -> list[str]:
    """The FAILED / ERROR lines of pytest's short test summary (-ra) in ``log`` and its closing
    line; the log's last lines when there is no such summary (a crash, a usage error)."""
    try:
        lines = log.read_text(errors="replace").splitlines()
    except OSError:
        return [f"(no log at {log})"]
    starts = [i for i, line in enumerate(lines) if "short test summary info" in line]
    if not starts:
        return ["(no short test summary; the log ends with:)", *lines[-12:]]
    section = lines[starts[-1] + 1 :]
    picked = [line for line in section if line.startswith(("FAILED", "ERROR"))]
    if len(picked) > limit:
        picked = [*picked[:limit], f"... {len(picked) - limit} more in {log.relative_to(ROOT)}"]
    closing = [line for line in section if line.startswith("=")][-1:]
    return picked + closing + first_failure_detail(lines)


def first_failure_detail(lines: list[str], limit: int = 40) -> list[str]:
    """The ``E`` lines of the log's first failure: pytest cuts the summary's lines to the
    terminal's width, and CI's output is often all there is to read."""
    first = next((i for i, line in enumerate(lines) if line.startswith("E   ")), None)
    if first is None:
        return []
    block = list(itertools.takewhile(lambda line: line.startswith("E   "), lines[first:]))
    return ["(the first failure says:)", *(line[:300] for line in block[:limit])]


def finish_suite(r: Running, cpu: float | None) -> None:
    out = r.outcome
    out.test_seconds = time.monotonic() - r.started
    out.cpu_seconds = cpu
    rc = r.proc.returncode
    counts = read_junit(r.junit)
    if counts is not None:
        out.passed, out.failed, out.errors, out.skipped = counts
    if rc == 5:
        out.notes.append("pytest collected no tests (exit 5)")
    elif rc != 0:
        out.notes.append(f"pytest exit {rc}")
    if counts is None:
        out.notes.append(f"no JUnit report at {r.junit.relative_to(ROOT)}")
    elif rc == 0 and out.passed + out.skipped == 0:
        out.notes.append("no test ran")
    out.ok = rc == 0 and counts is not None and out.passed + out.skipped > 0
    passed, failed, errors, skipped = out.counted()
    detail = [f"{passed} passed"]
    detail += [f"{n} {what}" for n, what in ((failed, "failed"), (errors, "errors")) if n]
    detail += [f"{skipped} skipped"] if skipped else []
    cpu_text = f", cpu {cpu:.0f} s" if cpu is not None else ""
    status = "ok" if out.ok else "FAILED"
    notes = f"  [{'; '.join(out.notes)}]" if out.notes else ""
    say(
        f"{out.suite:<8} {status:<9} {', '.join(detail)} in {out.test_seconds:.0f} s{cpu_text}"
        f"  ({r.log.relative_to(ROOT)}){notes}"
    )
    if not out.ok and "interrupted" not in out.notes:
        for line in failure_summary(r.log):
            say(f"{'':<9}| {line}")


def run_suites(
    uv: list[str], ready: list[tuple[Suite, Outcome]], args: list[str], serial: bool
) -> bool:
    """Run the suites' pytest side by side (or one after another with ``serial``); stop them
    all at Ctrl-C (or SIGTERM). True if interrupted."""
    import signal

    def terminated(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, terminated) if hasattr(signal, "SIGTERM") else None
    running: list[Running] = []
    waiting = list(ready)
    try:
        while waiting or running:
            while waiting and (not serial or not running):
                suite, out = waiting.pop(0)
                running.append(start_suite(uv, suite, args, out))
            done, cpu = _wait_any(running)
            running.remove(done)
            finish_suite(done, cpu)
        return False
    except KeyboardInterrupt:
        say()
        say(f"dev.py: interrupted; stopping {', '.join(r.suite.name for r in running) or '-'}")
        stop_suites(running)
        for r in running:
            r.outcome.notes.append("interrupted")
            finish_suite(r, None)
        for _, out in waiting:
            out.notes.append("not started (interrupted)")
        return True
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def parse_test_args(args: list[str]) -> tuple[list[str], list[str], bool]:
    """(suite names, pytest arguments, serial?) from `test`'s arguments."""
    only: list[str] = []
    rest: list[str] = []
    serial = False
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--":
            rest.extend(args[i + 1 :])
            break
        if arg == "--only":
            if i + 1 >= len(args):
                sys.exit("dev.py: --only needs a suite name")
            only.extend(args[i + 1].split(","))
            i += 2
            continue
        if arg.startswith("--only="):
            only.extend(arg.split("=", 1)[1].split(","))
        elif arg == "--serial":
            serial = True
        else:
            rest.append(arg)
        i += 1
    only = [name.strip() for name in only if name.strip()]
    unknown = [name for name in only if name not in SUITES]
    if unknown:
        sys.exit(f"dev.py: unknown suite(s) {', '.join(unknown)}; choose from {', '.join(SUITES)}")
    names = [name for name in SUITES if not only or name in only]
    return names, rest, serial


def cmd_test(args: list[str]) -> int:
    began = time.monotonic()
    names, pytest_args, serial = parse_test_args(args)
    uv = find_uv()
    # Every environment first, one after another (uv holds a lock on its cache while it
    # installs), then the suites' pytest side by side.
    outcomes: list[Outcome] = []
    for name in names:
        outcomes.append(sync_suite(uv, SUITES[name]))
        if "interrupted" in outcomes[-1].notes:
            break
    interrupted = any("interrupted" in o.notes for o in outcomes)
    if not interrupted:
        ready = [(SUITES[o.suite], o) for o in outcomes if not o.notes]
        how = "one after another" if serial else "side by side"
        banner(f"tests: {', '.join(s.name for s, _ in ready) or 'none'}, {how}")
        interrupted = run_suites(uv, ready, pytest_args, serial)

    banner("summary")
    say(f"{'suite':<8} {'result':<7} {'passed':>7} {'failed':>7} {'errors':>7} {'skipped':>8}"
        f" {'sync s':>7} {'tests s':>8} {'cpu s':>7}")  # fmt: skip
    totals = [0, 0, 0, 0]
    for o in outcomes:
        counts = o.counted()
        totals = [a + b for a, b in zip(totals, counts, strict=True)]
        cpu = f"{o.cpu_seconds:.0f}" if o.cpu_seconds is not None else "-"
        notes = f"  [{'; '.join(o.notes)}]" if o.notes else ""
        say(f"{o.suite:<8} {'ok' if o.ok else 'FAILED':<7} {counts[0]:>7} {counts[1]:>7}"
            f" {counts[2]:>7} {counts[3]:>8} {o.sync_seconds:>7.1f} {o.test_seconds:>8.1f}"
            f" {cpu:>7}{notes}")  # fmt: skip
    say()
    passed, failed, errors, skipped = totals
    say(f"{passed} passed, {failed} failed, {errors} errors, {skipped} skipped"
        f" in {time.monotonic() - began:.0f} s (wall, sync included)")  # fmt: skip
    if interrupted:
        return 130
    return 0 if outcomes and all(o.ok for o in outcomes) else 1


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help", "help"):
        say(__doc__ or "")
        return 0 if argv else 2
    command, args = argv[0], argv[1:]
    if command == "demo":
        return cmd_demo(args)
    if command == "test":
        return cmd_test(args)
    say(f"dev.py: unknown command {command!r}; use `demo` or `test`")
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
