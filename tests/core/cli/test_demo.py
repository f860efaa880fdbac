"""``sluicegate demo``: the gate halts the step, reviewers resume it, a refusal stops it.

The demo runs as a subprocess, as a user runs it: it serves from its own process, sets that
process's OpenLineage configuration, and its approver runs ``python -m sluicegate.cli``. That
the commands it prints run as printed is tests/core/test_demo.py.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from tests.core.support.cli import run


def test_demo_halts_at_the_gate_and_resumes_when_approved(tmp_path: Path) -> None:
    proc = run("demo", "--approve-as", "alice,bob", "--wait", "60", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "allowed by rule 'routine-reads': the step ran at once" in out
    assert "the gate halts the step: pending, rule 'pii-export', 2 approvals needed" in out
    # Signed review links: /r/<request>?t=<claims>.<timestamp>.<signature> (see links.py).
    assert re.search(r"/r/\S+\?t=[\w-]+\.[\w-]+\.[\w-]+", out), out
    assert "carol (the job owner) tries to approve: refused" in out and "job owner" in out
    assert "approved by alice, bob; the step resumed" in out
    assert "refused by policy, the step does not run" in out
    assert "chain intact" in out
    # Where the lineage went: a file of OpenLineage events, one run per gate.
    line = next(x for x in out.splitlines() if x.startswith("Lineage: "))
    assert "(START, COMPLETE, START, OTHER, OTHER, COMPLETE, START, FAIL)" in line, line
    path = Path(line.rsplit(" in ", 1)[1])
    events = [json.loads(x) for x in path.read_text().splitlines()]
    assert [e["eventType"] for e in events][-2:] == ["START", "FAIL"]
    assert events[5]["run"]["facets"]["sluicegate_approval"]["status"] == "released"


def test_demo_without_approvals_fails_closed(tmp_path: Path) -> None:
    proc = run("demo", "--wait", "2", cwd=tmp_path)
    assert "still pending" in proc.stdout
    assert "the step does not run" in proc.stdout
    assert proc.returncode == 1
