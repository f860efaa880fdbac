"""Every mistake a user can make on the command line is one line naming it, and exit 2.

In process with click's ``CliRunner`` on the root group (``sluicegate.cli.cli``, which keeps
the error contract of ``sluicegate.cli:main``, what the ``sluicegate`` script calls), except
``serve``, which runs as the real process: a port already taken is a real socket, and what
``serve`` imports before it answers (what makes a user wait) only a fresh interpreter shows.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from sluicegate.cli import cli
from sluicegate.wire import RequestOut
from tests.core.support.paths import ROOT

POLICY = str(ROOT / "examples" / "policy.yaml")
ACTION = str(ROOT / "examples" / "actions" / "pii-export.json")
SLUICEGATE = str(Path(sys.executable).with_name("sluicegate"))


pytestmark = pytest.mark.usefixtures("isolated")  # none of the developer's settings leaks in


def sluicegate(*args: str) -> tuple[int, str]:
    """``sluicegate ARGS`` in process: (exit code, stderr)."""
    result = CliRunner().invoke(cli, args, catch_exceptions=False)
    return result.exit_code, result.stderr


def one_line(code: int, err: str, *fragments: str) -> None:
    """Exit 2 and one line on stderr that names the problem (no trace, no help URL)."""
    assert code == 2, err
    assert err.startswith("sluicegate: error: ") and err.count("\n") == 1, err
    assert "internal error" not in err and "Traceback" not in err
    assert "errors.pydantic.dev" not in err and "For further information" not in err
    for fragment in fragments:
        assert fragment in err, err


def write(path: Path, value: Any) -> str:
    path.write_text(json.dumps(value))
    return str(path)


def test_a_requester_file_holding_a_list(tmp_path: Path) -> None:
    requester = write(tmp_path / "r.json", [{"job": "crm.export"}])
    code, err = sluicegate("policy", "check", POLICY, "--action", ACTION, "--requester", requester)
    one_line(code, err, f"requester file {requester}", "expected a JSON object, got a list")


def test_a_gate_body_whose_requester_is_a_number(tmp_path: Path) -> None:
    body = {"action": json.loads(Path(ACTION).read_text()), "requester": 3}
    action = write(tmp_path / "gate.json", body)
    code, err = sluicegate("policy", "check", POLICY, "--action", action)
    one_line(code, err, f"action file {action}: requester", "got the number 3")


def test_a_requester_field_of_the_wrong_type_names_the_field(tmp_path: Path) -> None:
    requester = write(tmp_path / "r.json", {"job": "crm.export", "try_number": "second"})
    code, err = sluicegate("policy", "check", POLICY, "--action", ACTION, "--requester", requester)
    one_line(code, err, "try_number", "valid integer")


def test_an_action_file_nested_deeper_than_json_can_be_read(tmp_path: Path) -> None:
    action = tmp_path / "deep.json"
    action.write_text('{"a":' * 100_000 + "1" + "}" * 100_000)
    code, err = sluicegate("policy", "check", POLICY, "--action", str(action))
    one_line(code, err, f"action file {action}", "nested too deeply")


def test_a_server_url_with_a_port_that_cannot_exist() -> None:
    code, err = sluicegate("requests", "list", "--server", "http://127.0.0.1:99999", "--token", "t")
    one_line(code, err, "server URL 'http://127.0.0.1:99999'", "out of range")


# ----------------------------------------------------------------------------- serve

#: ``sluicegate`` as the script runs it, telling on stderr, at exit, whether the server's
#: modules were imported (they take one to two seconds before a user hears anything).
_WATCHED = (
    "import atexit, sys\n"
    "atexit.register(lambda: 'sluicegate.server.app' in sys.modules\n"
    "                and sys.stderr.write('(the server was imported)\\n'))\n"
    "from sluicegate.cli import main\n"
    "main(sys.argv[1:])\n"
)


def serve(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLUICEGATE_")}
    db = f"sqlite:///{tmp_path}/sluicegate.db"
    return subprocess.run(
        [sys.executable, "-c", _WATCHED, "serve", "--db", db, *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        env=env,
    )


def test_serve_without_a_policy_says_so_before_loading_the_server(tmp_path: Path) -> None:
    proc = serve(tmp_path)
    one_line(proc.returncode, proc.stderr, "no policy file", "--policy")


def test_serve_on_a_busy_port_says_so_and_never_serving_on(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        for workers in ("1", "2"):
            proc = serve(tmp_path, "--policy", POLICY, "--port", str(port), "--workers", workers)
            one_line(proc.returncode, proc.stderr, f"cannot listen on 127.0.0.1:{port}", "in use")
            assert "serving on" not in proc.stderr


def test_the_real_script_reports_a_busy_port_in_one_line(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {k: v for k, v in os.environ.items() if not k.startswith("SLUICEGATE_")}
        proc = subprocess.run(
            [
                SLUICEGATE,
                "serve",
                "--db",
                f"sqlite:///{tmp_path}/s.db",
                "--policy",
                POLICY,
                "--port",
                str(port),
            ],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=tmp_path,
            env=env,
        )
    one_line(proc.returncode, proc.stderr, "address already in use")


# ----------------------------------------------------------------------------- the adapters' line


@pytest.mark.parametrize(
    ("answer", "said"),
    [
        ({"status": "allowed", "rule": None}, "allowed by the policy's default"),
        ({"status": "denied", "rule": "no-secrets"}, "denied by rule 'no-secrets'"),
        ({"status": "pending", "rule": "pii-export"}, "pending under rule 'pii-export'"),
    ],
)
def test_an_answer_in_words_never_says_rule_none(answer: dict[str, Any], said: str) -> None:
    assert RequestOut.model_validate({"id": "x", **answer}).outcome == said
