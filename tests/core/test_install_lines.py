"""Every install-from-a-checkout line the READMEs print works as printed.

Each ``pip install ./...`` line of README.md and of each distribution's README runs, as
written, from the repository root in a fresh virtual environment; then every distribution it
installed from the checkout is imported from that environment (from its site-packages, not
the checkout), and where the core was installed with its ``server`` extra, the server imports
and ``sluicegate --help`` runs.

Plain pip runs the core's line, ``pip install './core[server]'`` (the one every reader runs
first: 20-35 s). The other lines run through ``uv pip install --python <venv>``, with the same
arguments: plain pip took 123 s to install Airflow's line from a warm cache on the 2-core
development machine (uv: 10 s), every plain-pip line costs 20 s or more of building and
unpacking, and this suite runs beside the others within a time budget. ``--no-sources`` keeps
uv from finding the core through the workspace (pip would not): a line that forgets ``./core``
fails here as it fails for a user, since ``sluicegate`` is on no index yet.
"""

from __future__ import annotations

import ensurepip
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[2]
READMES = [
    ROOT / "README.md",
    ROOT / "core" / "README.md",
    ROOT / "airflow_provider" / "README.md",
    ROOT / "dagster_integration" / "README.md",
    ROOT / "prefect_integration" / "README.md",
]
#: Each folder of the checkout that holds a distribution, and its import name.
IMPORTS = {
    "core": "sluicegate",
    "airflow_provider": "sluicegate_airflow",
    "dagster_integration": "dagster_sluicegate",
    "prefect_integration": "prefect_sluicegate",
}
TIMEOUT = 600

_INLINE = re.compile(r"`(pip install [^`]+)`")


def install_lines(text: str) -> list[str]:
    """The ``pip install`` commands in ``text`` that install a folder of the checkout.

    A command is a line that starts with ``pip install`` (its ``# comment`` dropped) or a code
    span holding one; it installs from the checkout when one of its arguments is ``./...``.
    """
    found = []
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("pip install "):
            found.append(re.sub(r"\s+#.*$", "", stripped))
        else:
            found.extend(m.strip() for m in _INLINE.findall(line))
    return [c for c in found if any(arg.startswith("./") for arg in shlex.split(c))]


def local_folders(command: str) -> dict[str, set[str]]:
    """The checkout's folders that ``command`` installs, each with the extras it asks for."""
    folders: dict[str, set[str]] = {}
    for arg in shlex.split(command)[2:]:
        m = re.fullmatch(r"\./([\w.-]+)/?(?:\[([\w,\s-]*)\])?", arg)
        if m:
            extras = {e.strip() for e in (m.group(2) or "").split(",") if e.strip()}
            folders.setdefault(m.group(1), set()).update(extras)
    return folders


def _uv() -> list[str]:
    # `uv run` (dev.py) names its own binary in $UV; else uv on PATH, or as dev.py installs it.
    candidates = [[os.environ["UV"]]] if os.environ.get("UV") else []
    if shutil.which("uv"):
        candidates.append([str(shutil.which("uv"))])
    candidates.append([sys.executable, "-m", "uv"])
    if shutil.which("python3"):  # by its path: the fresh venv's python3 comes first on PATH
        candidates.append([str(shutil.which("python3")), "-m", "uv"])
    candidates.append([str(ROOT / ".tools" / "bin" / "uv")])
    for cmd in candidates:
        try:
            ok = subprocess.run([*cmd, "--version"], capture_output=True, check=False)
        except OSError:
            continue
        if ok.returncode == 0:
            return cmd
    raise AssertionError("uv not found (python3 dev.py installs it)")


def _clean_env(venv: Path, home: Path) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("VIRTUAL_ENV", "PYTHON", "UV_", "PIP_", "AIRFLOW", "PREFECT_"))
    }
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env["VIRTUAL_ENV"] = str(venv)
    env["UV_PYTHON_DOWNLOADS"] = "never"
    # pip compiles every file it installs to bytecode (a third of the core line's CPU); the
    # imports below compile what they import, as uv's installs do. Not PIP_NO_COMPILE=1: pip
    # reads a variable as its option's value, and `--no-compile`'s is `compile`, so that
    # variable sets compile = true.
    env["PIP_COMPILE"] = "0"
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    # Importing the orchestrators writes their homes: keep them out of the user's.
    env["AIRFLOW_HOME"] = str(home / "airflow")
    env["PREFECT_HOME"] = str(home / "prefect")
    env["DAGSTER_HOME"] = str(home / "dagster")
    (home / "dagster").mkdir(parents=True, exist_ok=True)
    return env


def _unknown_extras(folders: dict[str, set[str]]) -> list[str]:
    # pip and uv only warn about an extra a distribution does not have, and install without it.
    unknown = []
    for folder, extras in folders.items():
        pyproject = ROOT / folder / "pyproject.toml"
        if pyproject.is_file():
            project = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]
            known = set(project.get("optional-dependencies", {}))
            unknown += [f"{folder}[{e}]" for e in sorted(extras - known)]
    return unknown


def _make_venv(venv: Path, env: dict[str, str], uv: list[str], *, with_pip: bool) -> None:
    """A fresh venv of this Python, with the pip ``python -m venv`` gives it if ``with_pip``.

    That pip is ensurepip's bundled wheel, installed here by uv: ensurepip compiles all 700 of
    pip's files first (5 CPU seconds), where an uncompiled pip compiles what it imports."""
    made = [sys.executable, "-m", "venv", "--without-pip", str(venv)]
    subprocess.run(made, check=True, capture_output=True, timeout=TIMEOUT)
    if not with_pip:
        return
    python = str(venv / "bin" / "python")
    bundled = sorted((Path(ensurepip.__file__).parent / "_bundled").glob("pip-*.whl"))
    if bundled:  # some Linux distributions' Pythons keep the wheel elsewhere: then ensurepip
        seed = [*uv, "pip", "install", "--python", python, "--no-deps", str(bundled[-1])]
    else:
        seed = [python, "-m", "ensurepip", "--upgrade", "--default-pip"]
    subprocess.run(seed, check=True, capture_output=True, timeout=TIMEOUT, env=env)


def check_line(command: str, where: Path, uv: list[str]) -> list[str]:
    """Run ``command`` as a user would, in a fresh venv under ``where``; what went wrong."""
    folders = local_folders(command)
    if _unknown_extras(folders):
        return [f"{command!r}: no such extra: {', '.join(_unknown_extras(folders))}"]
    # Unquoted, `./core[server]` is a glob pattern: zsh (macOS's shell) stops at no match.
    if re.search(r"(?:^|\s)\./\S*\[", command):
        return [f"{command!r}: quote the argument with extras ('./core[server]')"]
    by_pip = folders == {"core": {"server"}}
    venv = where / "venv"
    env = _clean_env(venv, where / "home")
    _make_venv(venv, env, uv, with_pip=by_pip)
    if by_pip:
        shell = command  # `pip` is the fresh venv's own, first on PATH
    else:
        runner = [*uv, "pip", "install", "--no-sources", "--python", str(venv / "bin" / "python")]
        shell = shlex.join(runner) + command.removeprefix("pip install")
    done = subprocess.run(
        ["bash", "-c", shell], cwd=ROOT, env=env, capture_output=True, text=True,
        timeout=TIMEOUT, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        return [f"{command!r} failed (exit {done.returncode}): {done.stderr[-2000:]}"]

    problems = []
    modules = [IMPORTS[f] for f in folders if f in IMPORTS]
    if "server" in folders.get("core", set()):
        modules.append("sluicegate.server")
    # From an empty folder, so the checkout is not on sys.path: the installed copies answer.
    probe = (
        "import importlib, pathlib, sys\n"
        "for name in sys.argv[1:]:\n"
        "    where = pathlib.Path(importlib.import_module(name).__file__).resolve()\n"
        f"    assert where.is_relative_to({str(venv.resolve())!r}), (name, str(where))\n"
    )
    imported = subprocess.run(
        [str(venv / "bin" / "python"), "-c", probe, *modules], cwd=where / "home", env=env,
        capture_output=True, text=True, timeout=TIMEOUT, check=False,
    )  # fmt: skip
    if imported.returncode != 0 or not modules:
        problems.append(f"{command!r}: import {', '.join(modules)}: {imported.stderr[-2000:]}")
    if "server" in folders.get("core", set()):
        helped = subprocess.run(
            [str(venv / "bin" / "sluicegate"), "--help"], cwd=where / "home", env=env,
            capture_output=True, text=True, timeout=TIMEOUT, check=False,
        )  # fmt: skip
        if helped.returncode != 0 or "serve" not in helped.stdout:
            problems.append(f"{command!r}: sluicegate --help: {helped.stderr[-2000:]}")
    return problems


def check_lines(commands: Iterable[str], where: Path) -> list[str]:
    """:func:`check_line` for each command, two at a time; every problem found."""
    uv = _uv()
    # The plain-pip line first: it takes longest.
    ordered = sorted(set(commands), key=lambda c: local_folders(c) != {"core": {"server"}})
    with ThreadPoolExecutor(max_workers=2) as pool:
        runs = [pool.submit(check_line, c, where / f"line{i}", uv) for i, c in enumerate(ordered)]
        return [p for r in runs for p in r.result()]


def test_each_distribution_readme_says_how_to_install_it_from_a_checkout() -> None:
    for readme in READMES[1:]:
        lines = install_lines(readme.read_text(encoding="utf-8"))
        assert any(readme.parent.name in local_folders(c) for c in lines), readme
    root = install_lines(READMES[0].read_text(encoding="utf-8"))
    assert {f for c in root for f in local_folders(c)} == set(IMPORTS), root
    assert any("server" in local_folders(c).get("core", set()) for c in root), root


def test_every_install_line_works_in_a_fresh_virtual_environment(tmp_path: Path) -> None:
    commands = [c for r in READMES for c in install_lines(r.read_text(encoding="utf-8"))]
    assert commands
    assert check_lines(commands, tmp_path) == []
