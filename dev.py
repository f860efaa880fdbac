#!/usr/bin/env python3
"""Sluicegate developer entry point (standard library only).

    python3 dev.py demo [ARGS...]     install the core environment, run `sluicegate demo ARGS`
    python3 dev.py test [--only SUITE[,SUITE]] [PYTEST ARGS...] [-- PYTEST ARGS...]

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

It keeps going after a failing suite, then prints one closing line summed over all suites,
`N passed, N failed, N skipped` (counted from pytest's JUnit XML in .test-results/), and exits
non-zero if any suite failed. A suite that could not run (sync failed, pytest collected no
test, pytest crashed) counts as one failure in that line, so `0 failed` always means success.

uv is found on PATH or as `python3 -m uv`; if missing it is installed with
`python3 -m pip install --user uv`, falling back to a bootstrap virtualenv in .tools/.
uv never downloads a Python: the system interpreter is used (UV_PYTHON_DOWNLOADS=never).
"""

from __future__ import annotations

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


SUITES: dict[str, Suite] = {
    s.name: s
    for s in (
        Suite("core", ".venv", ("--group", "dev"), "tests/core"),
        Suite(
            "airflow",
            ".venvs/airflow",
            ("--package", "airflow-provider-sluicegate", "--group", "dev", "--group", "airflow"),
            "tests/airflow",
        ),
        Suite(
            "dagster",
            ".venvs/dagster",
            ("--package", "dagster-sluicegate", "--group", "dev", "--group", "dagster"),
            "tests/dagster",
        ),
        Suite(
            "prefect",
            ".venvs/prefect",
            ("--package", "prefect-sluicegate", "--group", "dev", "--group", "prefect"),
            "tests/prefect",
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


def find_uv() -> list[str]:
    """Return the command that runs uv, installing uv if it is missing."""
    for cmd in _candidates():
        if _works(cmd):
            return cmd
    say(f"dev.py: uv not found; installing it: pip install --user '{UV_REQUIREMENT}'")
    pip = [sys.executable, "-m", "pip", "install", "--user", "--quiet", UV_REQUIREMENT]
    if subprocess.run(pip).returncode == 0:
        import site

        user_bin = Path(site.getuserbase()) / ("Scripts" if os.name == "nt" else "bin") / "uv"
        for cmd in [[str(user_bin)], *_candidates()]:
            if _works(cmd):
                return cmd
    say(f"dev.py: --user install failed or unusable; bootstrapping uv in {TOOLS}")
    if subprocess.run([sys.executable, "-m", "venv", str(TOOLS)]).returncode != 0:
        sys.exit(f"dev.py: could not create {TOOLS} (is the python3 venv module installed?)")
    bindir = TOOLS / ("Scripts" if os.name == "nt" else "bin")
    tools_python = bindir / ("python.exe" if os.name == "nt" else "python")
    install = [str(tools_python), "-m", "pip", "install", "--quiet", UV_REQUIREMENT]
    if subprocess.run(install).returncode != 0:
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


def cmd_demo(args: list[str]) -> int:
    uv = find_uv()
    env = uv_env(".venv")
    banner("demo: installing the core environment (.venv)")
    rc = run([*uv, "sync", "--locked", "--compile-bytecode", "--group", "dev"], env)
    if rc != 0:
        say(f"dev.py: uv sync failed (exit {rc})")
        return rc
    banner("demo: sluicegate demo " + " ".join(args))
    return run([*uv, "run", "--locked", "sluicegate", "demo", *args], env)


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


def read_junit(path: Path) -> tuple[int, int, int, int] | None:
    """(passed, failed, errors, skipped) from a pytest JUnit XML file."""
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


def run_suite(uv: list[str], suite: Suite, pytest_args: list[str]) -> Outcome:
    out = Outcome(suite.name)
    env = uv_env(suite.env)
    banner(f"suite {suite.name}: environment {suite.env}, tests in {suite.tests}")

    start = time.monotonic()
    rc = run([*uv, "sync", "--locked", "--compile-bytecode", *suite.sync], env)
    out.sync_seconds = time.monotonic() - start
    if rc != 0:
        out.notes.append(f"uv sync failed (exit {rc})")
        return out

    RESULTS.mkdir(exist_ok=True)
    junit = RESULTS / f"{suite.name}.xml"
    junit.unlink(missing_ok=True)
    # --no-sync: `uv run` would otherwise re-sync the environment to the default groups only.
    cmd = [*uv, "run", "--locked", "--no-sync", "pytest", suite.tests, f"--junitxml={junit}"]
    start = time.monotonic()
    rc = run([*cmd, *pytest_args], env)
    out.test_seconds = time.monotonic() - start

    counts = read_junit(junit)
    if counts is not None:
        out.passed, out.failed, out.errors, out.skipped = counts
    if rc == 5:
        out.notes.append("pytest collected no tests (exit 5)")
    elif rc != 0:
        out.notes.append(f"pytest exit {rc}")
    if counts is None:
        out.notes.append(f"no JUnit report at {junit.relative_to(ROOT)}")
    out.ok = rc == 0 and counts is not None and out.passed + out.skipped > 0
    if rc == 0 and counts is not None and out.passed + out.skipped == 0:
        out.notes.append("no test ran")
    return out


def parse_test_args(args: list[str]) -> tuple[list[str], list[str]]:
    only: list[str] = []
    rest: list[str] = []
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
        else:
            rest.append(arg)
        i += 1
    only = [name.strip() for name in only if name.strip()]
    unknown = [name for name in only if name not in SUITES]
    if unknown:
        sys.exit(f"dev.py: unknown suite(s) {', '.join(unknown)}; choose from {', '.join(SUITES)}")
    names = [name for name in SUITES if not only or name in only]
    return names, rest


def cmd_test(args: list[str]) -> int:
    names, pytest_args = parse_test_args(args)
    uv = find_uv()
    outcomes = [run_suite(uv, SUITES[name], pytest_args) for name in names]

    banner("summary")
    passed = failed = skipped = 0
    for o in outcomes:
        test_failures = o.failed + o.errors
        # A suite that failed without a failing test to show for it counts as one failure.
        suite_failures = test_failures if o.ok or test_failures else 1
        passed += o.passed
        failed += suite_failures
        skipped += o.skipped
        status = "ok" if o.ok else "FAILED"
        detail = f"{o.passed} passed, {test_failures} failed, {o.skipped} skipped"
        timing = f"sync {o.sync_seconds:.1f}s, tests {o.test_seconds:.1f}s"
        notes = f"  [{'; '.join(o.notes)}]" if o.notes else ""
        say(f"{o.suite:<8} {status:<7} {detail}  ({timing}){notes}")
    say()
    say(f"{passed} passed, {failed} failed, {skipped} skipped")
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
