"""The documentation as a reader meets it: the docs site builds, the README stays short, and
every relative link in the READMEs and the docs pages leads somewhere.

The site is built with the core environment's own MkDocs (``mkdocs build --strict``, into a
temporary folder): strict mode turns every warning into a failure, among them a link to a
missing page or anchor, a snippet whose file is gone, and the build hook that generates the
API reference from the server's OpenAPI document failing.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import unicodedata
from pathlib import Path

import pytest
import tomllib

ROOT = Path(__file__).resolve().parents[2]
DISTRIBUTION_READMES = [
    ROOT / "core" / "README.md",
    ROOT / "airflow_provider" / "README.md",
    ROOT / "dagster_integration" / "README.md",
    ROOT / "prefect_integration" / "README.md",
]
README_MAX_LINES = 300

_FENCE = re.compile(r"^ {0,3}(```|~~~).*?^ {0,3}\1[^\n]*$", re.M | re.S)
_CODE_SPAN = re.compile(r"`[^`\n]*`")
# [text](target) and ![alt](target); the target ends at whitespace (an optional "title" after).
_LINK = re.compile(r"!?\[[^\]\n]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_HEADING = re.compile(r"^ {0,3}#{1,6}\s+(.+?)\s*#*\s*$", re.M)
_SNIPPET = re.compile(r'^--8<--\s+"([^"]+)"\s*$', re.M)


def _prose(text: str) -> str:
    """``text`` without its code blocks and code spans, where a link is only an example."""
    return _CODE_SPAN.sub("", _FENCE.sub("", text))


def _slug(heading: str) -> str:
    """The anchor Python-Markdown's toc (MkDocs) gives a heading; GitHub's agrees for ours."""
    text = re.sub(r"[`*_]", "", heading)
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text)  # a link in a heading: its text
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    text = re.sub(r"[^\w\s-]", "", text).strip().lower()
    return re.sub(r"[-\s]+", "-", text)


def _rendered(path: Path) -> str:
    """The page as MkDocs renders it: a ``--8<-- "file"`` line replaced by that file."""
    text = path.read_text(encoding="utf-8")
    return _SNIPPET.sub(lambda m: (ROOT / m.group(1)).read_text(encoding="utf-8"), text)


def _anchors(path: Path) -> set[str]:
    return {_slug(h) for h in _HEADING.findall(_FENCE.sub("", _rendered(path)))}


def _relative_links(path: Path) -> list[str]:
    targets = _LINK.findall(_prose(path.read_text(encoding="utf-8")))
    return [t for t in targets if not re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*:", t)]


def broken_links(path: Path) -> list[str]:
    """Each relative link in ``path`` whose file, or whose anchor in that file, is missing."""
    broken = []
    for target in _relative_links(path):
        file_part, _, anchor = target.partition("#")
        dest = (path.parent / file_part).resolve() if file_part else path
        if not dest.exists():
            broken.append(f"{path.relative_to(ROOT)}: {target} (no such file)")
        elif anchor and dest.suffix == ".md" and anchor not in _anchors(dest):
            broken.append(f"{path.relative_to(ROOT)}: {target} (no such heading)")
    return broken


def _markdown_files() -> list[Path]:
    return [ROOT / "README.md", *DISTRIBUTION_READMES, *sorted((ROOT / "docs").rglob("*.md"))]


def test_the_docs_site_builds_in_strict_mode(tmp_path: Path) -> None:
    site = tmp_path / "site"
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    out = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file",
         str(ROOT / "mkdocs.yml"), "--site-dir", str(site)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-6000:]
    # The generated references hold what the server and the CLI have, not a copy.
    api = (site / "api" / "index.html").read_text(encoding="utf-8")
    assert 'id="post-apiv1requestsrequest_iddecisions"' in api  # an operation's heading
    assert "ErrorOut" in api
    cli = (site / "cli" / "index.html").read_text(encoding="utf-8")
    assert "sluicegate token create" in cli and "--principal" in cli
    # The distribution READMEs and the benchmark history are included, not copied.
    dagster = (site / "orchestrators" / "dagster" / "index.html").read_text(encoding="utf-8")
    assert "approval_sensor" in dagster
    assert "bench_prefect_gate.py" in (site / "benchmarks" / "index.html").read_text("utf-8")


def test_the_readme_is_read_in_ten_minutes() -> None:
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= README_MAX_LINES, f"README.md has {len(lines)} lines"


@pytest.mark.parametrize("path", _markdown_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_leads_somewhere(path: Path) -> None:
    assert broken_links(path) == []


@pytest.mark.parametrize("path", DISTRIBUTION_READMES, ids=lambda p: p.parent.name)
def test_a_long_description_has_no_relative_links(path: Path) -> None:
    # Each README is its package's long description on an index, where a relative link
    # points at nothing: name other files and pages in plain text instead.
    assert _relative_links(path) == []


@pytest.mark.parametrize("path", DISTRIBUTION_READMES, ids=lambda p: p.parent.name)
def test_each_distribution_publishes_its_readme(path: Path) -> None:
    project = tomllib.loads((path.parent / "pyproject.toml").read_text("utf-8"))["project"]
    assert project["readme"] == "README.md"
