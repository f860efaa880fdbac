"""``sluicegate demo``: a pipeline halts at a gate until reviewers approve, end to end.

It starts the real server on SQLite with the example policy, runs example pipeline steps
through the core gate client (the orchestrator adapters replace that client's caller), prints
the review links, and resumes the gated step the moment the decision lands. With
``--approve-as alice,bob`` the approvals come from a second process, so the demo runs
unattended; without it, approve in the browser or with the printed CLI command.
"""

from __future__ import annotations

import json
import os
import shlex
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from importlib.resources import files
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sluicegate.exceptions import ClientError, SluicegateError
from sluicegate.links import sign_link
from sluicegate.settings import load_settings

if TYPE_CHECKING:
    from sluicegate.model import Requester
    from sluicegate.policy import Policy

__all__ = [
    "approver_argv",
    "bundled_policy_path",
    "eligible_reviewers",
    "free_port",
    "print_audit_commands",
    "print_review",
    "run_demo",
    "sluicegate_argv",
    "sluicegate_command",
]

PROD = "postgres://prod:5432"
PIPELINE = "demo-pipeline"
Echo = Callable[[str], None]


def bundled_policy_path() -> Path:
    """The example policy shipped with the package (also examples/policy.yaml)."""
    return Path(str(files("sluicegate.demo").joinpath("policy.yaml")))


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def sluicegate_argv() -> list[str]:
    """The command that runs this very `sluicegate`, by full path: the console script beside
    the running Python (a virtualenv's bin/ need not be on PATH), else ``python -m``."""
    here = Path(sys.executable).parent  # not resolved: a venv's python is a symlink
    for name in ("sluicegate", "sluicegate.exe"):
        script = here / name
        if script.is_file() and os.access(script, os.X_OK):
            return [str(script)]
    return [sys.executable, "-m", "sluicegate.cli"]


def sluicegate_command(*args: str) -> str:
    """:func:`sluicegate_argv` with ``args``, quoted for a POSIX shell: it runs as printed."""
    return shlex.join([*sluicegate_argv(), *args])


def print_review(
    echo: Echo,
    *,
    server_url: str,
    request_id: str,
    review_url: str,
    key: bytes,
    reviewers: Sequence[str],
    tokens: dict[str, str],
    indent: str = "   ",
) -> None:
    """The signed review link and a ready `requests approve` command (with that reviewer's
    demo review token) for each reviewer in ``reviewers``."""
    echo(f"{indent}review links (one per eligible reviewer, signed, single-use):")
    for reviewer in reviewers:
        echo(f"{indent}  {reviewer}: {review_url}?t={sign_link(key, request_id, reviewer)}")
    echo(f"{indent}or approve from a shell, as each reviewer (with their demo review token):")
    for reviewer in reviewers:
        command = sluicegate_command(
            "requests", "approve", request_id, "--server", server_url, "--token", tokens[reviewer]
        )
        echo(f"{indent}  {command}  # as {reviewer}")


def print_audit_commands(echo: Echo, *, db_url: str, folder: Path, policy: Path) -> None:
    """Where the demo's database stays, and the commands that read it after the demo."""
    echo(f"The demo's database stays in {folder} (delete the folder when done):")
    echo(f"  {sluicegate_command('audit', 'verify', '--db', db_url)}")
    echo(f"  {sluicegate_command('audit', 'export', '--db', db_url, '--format', 'csv')}")
    echo("  more review tokens (a reviewer of the policy; --db and --policy name the demo's):")
    command = sluicegate_command(
        "token", "create", "--db", db_url, "--policy", str(policy), "--principal", "alice"
    )
    echo(f"  {command} --scope review")


def eligible_reviewers(
    policy: Policy, groups: Sequence[str], requester: Requester | Mapping[str, Any] | None
) -> list[str]:
    """The reviewers who may decide a request of ``groups`` (never its requester, owner or
    trigger), in policy order."""
    from sluicegate.model import Requester

    who = Requester.model_validate(requester or {})
    return [r.id for r in policy.members(groups) if policy.may_decide(r.id, groups, who) is None]


class _Server:
    """The real server (uvicorn) in a thread of this process."""

    def __init__(self, app: object, port: int) -> None:
        import uvicorn

        self.server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)  # type: ignore[arg-type]
        )
        self.thread = threading.Thread(
            target=self.server.run, name="sluicegate-server", daemon=True
        )

    def __enter__(self) -> _Server:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise SluicegateError("the demo server did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


def run_demo(
    *,
    db_url: str | None = None,
    policy_file: str | None = None,
    approve_as: Sequence[str] = (),
    port: int = 0,
    wait: float = 600.0,
    echo: Echo = print,
) -> int:
    """Run the demo; returns the exit code (0 when every step ended as the policy says)."""
    from sluicegate.server import create_app

    folder = Path(tempfile.mkdtemp(prefix="sluicegate-demo-"))
    db_url = db_url or f"sqlite:///{folder / 'sluicegate.db'}"
    port = port or free_port()
    server_url = f"http://127.0.0.1:{port}"
    settings = load_settings(
        db_url=db_url, policy=str(policy_file or bundled_policy_path()), server_url=server_url
    )
    if settings.secret_key is None and not settings.db_url.startswith("sqlite"):
        # The demo's one server lives as long as this process: a key of its own is enough
        # (a served PostgreSQL database needs SLUICEGATE_SECRET_KEY, shared by its replicas).
        import secrets

        from pydantic import SecretStr

        settings = settings.model_copy(update={"secret_key": SecretStr(secrets.token_urlsafe(48))})
    lineage_file = _lineage_to_file(folder)
    app = create_app(settings)
    st = app.state.sluicegate
    tokens = {r: st.store.create_token(r, "review") for r in st.policy.reviewers}
    pipeline_token = st.store.create_token(PIPELINE, "request")
    echo(
        f"Sluicegate server on {server_url} (SQLite {db_url.removeprefix('sqlite:///')}), "
        f"policy {settings.policy}: {len(st.policy.spec.rules)} rules"
    )
    with _Server(app, port):
        code = _story(
            server_url, pipeline_token, tokens, st.secret_key, st.policy, approve_as, wait, echo
        )
        from sluicegate.client import SluicegateClient

        auditor = st.store.create_token("demo-auditor", "audit")  # only it reads the audit
        with SluicegateClient(server_url, auditor) as client:
            verified = client.verify_audit()
    echo("")
    echo(
        f"Audit: {verified.rows} rows, "
        f"chain {'intact' if verified.ok else 'BROKEN: ' + verified.problem}, "
        f"head {verified.head}"
    )
    print_audit_commands(echo, db_url=db_url, folder=folder, policy=Path(settings.policy or ""))
    emitter = st.workflow.lineage.emitter if st.workflow.lineage else None
    if lineage_file is not None:
        events = _event_types(lineage_file)
        echo(f"Lineage: {len(events)} OpenLineage events ({', '.join(events)}) in {lineage_file}")
        echo("  set OPENLINEAGE_URL=http://marquez:5000 to send them to Marquez instead")
    elif emitter is not None and emitter.enabled:
        counts = ", ".join(f"{n} {k}" for k, n in emitter.counts.items())
        echo(
            f"Lineage: sent through your OpenLineage {emitter.transport_kind} transport ({counts})"
        )
    return code if verified.ok else 1


def _lineage_to_file(folder: Path) -> Path | None:
    """Unless OpenLineage is configured already, send the demo's events to a file in
    ``folder`` (JSON Lines) so that the demo shows them; returns that file, or None."""
    import os

    from sluicegate.lineage.emitter import LineageEmitter

    probe = LineageEmitter.from_environment()
    configured = probe.enabled or os.environ.get("OPENLINEAGE_DISABLED", "").lower() == "true"
    probe.close(0)
    if configured:
        return None
    target = folder / "lineage.jsonl"
    config = folder / "openlineage.yml"
    config.write_text(
        f"transport:\n  type: file\n  log_file_path: {json.dumps(str(target))}\n  append: true\n"
    )
    os.environ["OPENLINEAGE_CONFIG"] = str(config)
    return target


def _event_types(path: Path) -> list[str]:
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return []
    return [str(json.loads(line).get("eventType")) for line in lines if line.strip()]


def approver_argv(
    server_url: str, request_id: str, tokens: Sequence[str], *, pause: float = 1.0
) -> tuple[list[str], dict[str, str]]:
    """The command (and the environment to add) of a second process that approves
    ``request_id`` with each review token in turn, through the CLI, as a person would. The
    tokens go through the environment, not the command line that `ps` shows."""
    script = (
        "import os, sys, time, subprocess\n"
        "time.sleep(float(sys.argv[3]))\n"
        "for token in os.environ.pop('SLUICEGATE_DEMO_TOKENS').split():\n"
        "    subprocess.run([sys.executable, '-m', 'sluicegate.cli', 'requests', 'approve',\n"
        "                    sys.argv[2], '--server', sys.argv[1],\n"
        "                    '--comment', 'ok for the partner share'],\n"
        "                   env={**os.environ, 'SLUICEGATE_TOKEN': token})\n"
        "    time.sleep(0.5)\n"
    )
    argv = [sys.executable, "-c", script, server_url, request_id, str(pause)]
    return argv, {"SLUICEGATE_DEMO_TOKENS": " ".join(tokens)}


def _approver(
    server_url: str, request_id: str, reviewers: Sequence[str], tokens: dict[str, str]
) -> subprocess.Popen[str]:
    """A second process that approves as each reviewer in turn."""
    unknown = [r for r in reviewers if r not in tokens]
    if unknown:
        raise SluicegateError(f"--approve-as: {', '.join(unknown)} is not a reviewer in the policy")
    argv, env = approver_argv(server_url, request_id, [tokens[r] for r in reviewers])
    return subprocess.Popen(argv, env={**os.environ, **env}, stdout=subprocess.DEVNULL, text=True)


def _story(
    server_url: str,
    pipeline_token: str,
    tokens: dict[str, str],
    key: bytes,
    policy: Policy,
    approve_as: Sequence[str],
    wait: float,
    echo: Echo,
) -> int:
    from sluicegate.client import GateRefused, SluicegateClient

    requester = {
        "orchestrator": "demo",
        "job": "export_customers.publish",
        "run_id": "manual__2026-11-25",
        "owner": "carol",
        "triggered_by": "dave",
    }
    code = 0
    with SluicegateClient(server_url, pipeline_token) as pipeline:
        echo("\n1. extract: read the orders table")
        answer = pipeline.gate(
            "demo:revenue:read",
            {
                "kind": "read",
                "summary": "Read orders for the revenue report",
                "inputs": [{"namespace": PROD, "name": "sales.public.orders"}],
            },
            requester,
        )
        echo(f"   {answer.status} by rule {answer.rule!r}: the step ran at once, nobody was asked")

        echo("\n2. publish: export customers (PII) to the partner bucket")
        export = {
            "kind": "export",
            "summary": "Export customers to the partner bucket",
            "inputs": [{"namespace": PROD, "name": "crm.public.customers"}],
            "outputs": [{"namespace": "s3://partner-share", "name": "exports/customers.csv"}],
            "destination": "s3://partner-share/exports/customers.csv",
            "context": {"rows": 120000, "query": "SELECT * FROM crm.public.customers"},
        }
        key_ = "demo:export_customers:manual__2026-11-25:publish:0"
        opened = pipeline.open_gate(key_, export, requester)
        echo(
            f"   the gate halts the step: {opened.status}, rule {opened.rule!r}, "
            f"{opened.required_approvals} approvals needed from {', '.join(opened.groups)}"
        )
        print_review(
            echo,
            server_url=server_url,
            request_id=opened.id,
            review_url=str(opened.review_url),
            key=key,
            reviewers=eligible_reviewers(policy, opened.groups, opened.requester or requester),
            tokens=tokens,
        )
        with SluicegateClient(server_url, tokens["carol"]) as carol:
            try:
                carol.decide(opened.id, "approve")
            except ClientError as err:
                echo(f"   carol (the job owner) tries to approve: refused: {err.detail}")
        approver = _approver(server_url, opened.id, approve_as, tokens) if approve_as else None
        if approver is None:
            echo(f"   waiting up to {wait:.0f} s for a decision...")
        else:
            echo(f"   {', '.join(approve_as)} will approve from a second process")
        started = time.monotonic()
        try:
            done = pipeline.gate(key_, export, requester, timeout=wait)  # reattaches, long-polls
            echo(
                f"   approved by {', '.join(d.reviewer for d in done.decisions)}; the step resumed "
                f"{(time.monotonic() - started):.1f} s after it halted and ran the export"
            )
        except GateRefused as err:
            echo(f"   the step does not run: {err.detail}")
        except ClientError as err:
            echo(f"   the step does not run: {err.detail}")
            code = 1
        finally:
            if approver is not None:
                approver.wait(timeout=60)

        echo("\n3. sync: copy API keys (secret) to a partner")
        try:
            pipeline.gate(
                "demo:vault:sync",
                {
                    "kind": "export",
                    "summary": "Copy API keys to a partner",
                    "inputs": [
                        {"namespace": PROD, "name": "vault.api_keys", "classifications": ["secret"]}
                    ],
                },
                requester,
            )
            echo("   UNEXPECTED: the policy let secrets out")
            code = 1
        except GateRefused as err:
            echo(f"   refused by policy, the step does not run: {err.detail}")
    return code
