"""Where things are: the repository's root and the files the tests read from it."""

from __future__ import annotations

from pathlib import Path

#: The repository's root (tests/core/support/ is three folders down).
ROOT = Path(__file__).resolve().parents[3]
EXAMPLES = ROOT / "examples"
#: The example policy every server test runs with unless it says otherwise.
POLICY = EXAMPLES / "policy.yaml"
#: Data the tests carry (the OpenLineage spec, Marquez's example events): tests/data/.
DATA = ROOT / "tests" / "data"
#: A self-signed certificate (and its key) for 127.0.0.1 and localhost.
CERTS = Path(__file__).resolve().parent / "certs"
