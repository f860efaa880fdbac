"""The end-to-end harness the three adapters' gate tests share: a real ``sluicegate serve``
subprocess with a policy, a request token for the pipeline, review tokens for each reviewer,
and what a test asks of it (decide as a reviewer through the API, read the requests, the audit
log, the outbox, the metrics, and the lineage events the server wrote).

Imported by tests/{airflow,dagster,prefect} as ``tests.gate_harness`` (see tests/__init__.py),
beside ``tests.adapter_checks`` and ``tests.demo_harness``: one module, since it holds one
concern, where a package would hold a single file. :class:`GateHarness` is the server and its
questions; :func:`gate_harness` makes a pytest fixture of one, for a suite's conftest.py. Each
suite keeps only what is its orchestrator's (a DAG, a Definitions, a flow). The core and pytest
only here: every suite's environment loads it.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Literal

import httpx
import pytest

from tests.core.support.serverproc import POLICY, ServerProcess

#: How long a test waits for what should happen (a request to show up, a run to end, an event
#: to be written) before it fails: generous, since the suites run side by side on a loaded
#: machine (dev.py); only a broken gate makes a test wait this long.
PATIENCE = 300.0

#: The example policy's data stewards: the reviewers every suite decides as.
STEWARDS = ("alice", "bob")

#: One decision as a reviewer makes it: (who, verdict, comment).
Decision = tuple[str, str, str]


class GateHarness:
    """One Sluicegate server, its tokens, and what a test asks of it.

    ``tokens`` maps a principal to its bearer token: the pipeline's request token
    (:attr:`requester`), a review token per reviewer, and an audit token (:attr:`auditor`).
    The server's own gate events go to :attr:`gate_events_file` (OpenLineage's file transport);
    steps that leave marks leave them in :attr:`marks`.
    """

    def __init__(
        self, server: ServerProcess, name: str, tokens: dict[str, str], requester: str
    ) -> None:
        self.server, self.name, self.tokens, self.requester = server, name, tokens, requester
        self.auditor: str | None = None
        self.marks = server.workdir / "marks"
        self.marks.mkdir(exist_ok=True)
        self.gate_events_file = server.workdir / f"{name}-gates.jsonl"

    @classmethod
    @contextlib.contextmanager
    def serving(
        cls,
        work: Path,
        *,
        requester: str,
        name: str = "sluicegate",
        policy: Path | str = POLICY,
        reviewers: tuple[str, ...] = STEWARDS,
        auditor: str | None = None,
        log_level: str = "warning",
        env: dict[str, str] | None = None,
    ) -> Iterator[GateHarness]:
        """A server on ``policy`` (a file, or its YAML text) and a fresh SQLite database in
        ``work``, with a request token for ``requester``, a review token for each of
        ``reviewers`` and an audit token for ``auditor``; stopped on the way out."""
        if isinstance(policy, str):
            (work / f"{name}-policy.yaml").write_text(policy)
            policy = work / f"{name}-policy.yaml"
        (work / f"{name}-openlineage.yml").write_text(
            f"transport:\n  type: file\n  log_file_path: {work / name}-gates.jsonl\n"
            "  append: true\n"
        )
        server_env = {"OPENLINEAGE_CONFIG": str(work / f"{name}-openlineage.yml"), **(env or {})}
        db = f"sqlite:///{work}/{name}.db"
        server = ServerProcess(db, policy, work, name=name, env=server_env, log_level=log_level)
        server.start()
        try:
            harness = cls(server, name, {}, requester)
            harness.token(requester, "request")
            for reviewer in reviewers:
                harness.token(reviewer, "review")
            if auditor is not None:
                harness.auditor = auditor
                harness.token(auditor, "audit")
            yield harness
        finally:
            server.stop()

    # ------------------------------------------------------------------------- tokens, calls

    @property
    def url(self) -> str:
        """The server's base URL."""
        return self.server.url

    @property
    def request_token(self) -> str:
        """The pipeline's request token (the one its gates ask with)."""
        return self.tokens[self.requester]

    def token(self, principal: str, scope: str) -> str:
        """A new token of ``scope`` for ``principal``, kept in :attr:`tokens`."""
        from sluicegate.store import Store

        with Store(self.server.db_url) as store:
            self.tokens[principal] = store.create_token(principal, scope)
        return self.tokens[principal]

    def auth(self, who: str) -> dict[str, str]:
        """The ``Authorization`` header of ``who``'s token."""
        return {"Authorization": f"Bearer {self.tokens[who]}"}

    def call(self, who: str, method: str, path: str, **kw: Any) -> Any:
        """``method path`` as ``who``; its JSON body (the call must succeed)."""
        r = httpx.request(method, f"{self.url}{path}", headers=self.auth(who), timeout=30, **kw)
        assert r.is_success, r.text
        return r.json()

    # ------------------------------------------------------------------------- requests

    def requests(
        self, job: str | None = None, status: str | None = None, **params: Any
    ) -> list[dict[str, Any]]:
        """The requests a reviewer lists (``GET /api/v1/requests``), filtered as given."""
        params |= {k: v for k, v in (("job", job), ("status", status)) if v is not None}
        items: list[dict[str, Any]] = self.call(
            STEWARDS[0], "GET", "/api/v1/requests", params=params
        )["items"]
        return items

    def only_request(self, run_id: str, **params: Any) -> dict[str, Any]:
        """The one request of the pipeline run ``run_id`` (of those :meth:`requests` lists)."""
        (req,) = [
            r for r in self.requests(**params) if (r["requester"] or {}).get("run_id") == run_id
        ]
        return req

    def post_decision(self, rid: str, who: str, verdict: str, comment: str = "") -> httpx.Response:
        """Decide on request ``rid`` as ``who`` through the API; the answer, whatever it is."""
        return httpx.post(
            f"{self.url}/api/v1/requests/{rid}/decisions",
            json={"verdict": verdict, "comment": comment},
            headers=self.auth(who),
            timeout=30,
        )

    def decide(self, rid: str, who: str, verdict: str, comment: str = "") -> None:
        """Decide on request ``rid`` as ``who``; the server must accept the decision."""
        self.post_decision(rid, who, verdict, comment).raise_for_status()

    def decide_all(self, rid: str, decisions: list[Decision]) -> None:
        """Decide on request ``rid`` as each (who, verdict, comment), in turn."""
        for who, verdict, comment in decisions:
            self.decide(rid, who, verdict, comment)

    def reviewer(
        self,
        decisions: list[Decision],
        *,
        before: Callable[[dict[str, Any]], None] | None = None,
        seen: set[str] | None = None,
    ) -> threading.Thread:
        """A started thread that waits for a new pending request, calls ``before`` with it (if
        given), then decides as each (who, verdict, comment), the way a person would. New: not
        pending when this is called, nor in ``seen``."""
        already = {r["id"] for r in self.requests(status="pending")} | (seen or set())

        def run() -> None:
            deadline = time.monotonic() + PATIENCE
            while time.monotonic() < deadline:
                new = [r for r in self.requests(status="pending") if r["id"] not in already]
                if new:
                    if before is not None:
                        before(new[0])
                    self.decide_all(new[0]["id"], decisions)
                    return
                time.sleep(0.05)

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        return thread

    # ------------------------------------------------------------------------- what it kept

    def audit_rows(self, job: str) -> list[dict[str, Any]]:
        """The audit rows of ``job``, as an auditor exports them (``GET /api/v1/audit``)."""
        assert self.auditor is not None, "this harness was made without an audit token"
        r = httpx.get(
            f"{self.url}/api/v1/audit", params={"job": job}, headers=self.auth(self.auditor)
        )
        assert r.status_code == 200, r.text
        return [json.loads(line) for line in r.text.splitlines()]

    def audit(self, job: str, run_id: str) -> list[str]:
        """The kinds of the audit rows of ``job``'s run ``run_id`` (those of its request too),
        as an auditor exports them."""
        rows = self.audit_rows(job)
        mine = [row for row in rows if row["data"].get("run_id") == run_id]
        requests = {row["request_id"] for row in mine} - {None}
        return [row["kind"] for row in rows if row in mine or row["request_id"] in requests]

    def audited(self, kind: str, request_id: str) -> list[Any]:
        """The stored audit events of ``kind`` about request ``request_id`` (read from the
        server's database)."""
        from sqlalchemy import select

        from sluicegate.store import Store
        from sluicegate.store.schema import audit_events

        with Store(self.server.db_url) as store, store.read() as conn:
            stmt = select(audit_events).where(
                audit_events.c.kind == kind, audit_events.c.request_id == request_id
            )
            return list(conn.execute(stmt).all())

    def outbox(self, request_id: str) -> list[dict[str, Any]]:
        """The server's outbox rows (notifications, resumes) of request ``request_id``."""
        from sluicegate.store import Store
        from sluicegate.store.notifications import OutboxTable

        with Store(self.server.db_url) as store:
            return OutboxTable(store).rows(request_id)

    def gates_opened(self, status: str | None = None) -> float:
        """How many gates the server answered (its metrics), with ``status`` (``created``,
        ``reattached``, ...) or whatever the answer."""
        r = httpx.get(f"{self.url}/metrics")
        assert r.status_code == 200, r.text
        prefix = "sluicegate_gates_opened_total{" + ("" if status is None else f'status="{status}"')
        return sum(
            float(line.split()[-1]) for line in r.text.splitlines() if line.startswith(prefix)
        )

    def gate_events(
        self,
        keep: Callable[[dict[str, Any]], bool],
        enough: Callable[[list[dict[str, Any]]], bool],
    ) -> list[dict[str, Any]]:
        """The server's lineage events that ``keep`` keeps, once ``enough`` says there are
        enough of them or :data:`PATIENCE` ran out (the server emits from a background thread;
        the caller asserts what it expects)."""
        deadline = time.monotonic() + PATIENCE
        while True:
            path = self.gate_events_file
            lines = path.read_text().splitlines() if path.exists() else []
            events = [e for e in map(json.loads, filter(None, lines)) if keep(e)]
            if enough(events) or time.monotonic() > deadline:
                return events
            time.sleep(0.1)

    # ------------------------------------------------------------------------- marks

    def ran(self, name: str) -> bool:
        """Whether a step left mark ``name``."""
        return (self.marks / name).exists()

    def forget(self) -> None:
        """Remove every mark."""
        for f in self.marks.iterdir():
            f.unlink()


def gate_harness(
    name: str = "sluicegate",
    *,
    requester: str,
    scope: Literal["module", "session"] = "module",
    needs: tuple[str, ...] = (),
    server_env: Callable[..., dict[str, str]] | None = None,
    ready: Callable[[GateHarness], None] | None = None,
    **options: Any,
) -> Any:
    """A pytest fixture (of ``scope``) that yields a :class:`GateHarness` serving in a fresh
    folder, for a suite's conftest.py: ``env = gate_harness(requester="dagster-prod")``.

    ``needs``: fixtures to set up first, whose values ``server_env`` gets as keyword arguments
    and returns the server's extra environment from. ``ready``: called with the harness once
    it serves (to point the orchestrator at it). ``options``: :meth:`GateHarness.serving`'s.
    """

    def fixture(
        request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
    ) -> Iterator[GateHarness]:
        values = {need: request.getfixturevalue(need) for need in needs}
        env = server_env(**values) if server_env is not None else {}
        work = tmp_path_factory.mktemp(f"gate-{name}")
        with GateHarness.serving(
            work, requester=requester, name=name, env=env, **options
        ) as harness:
            if ready is not None:
                ready(harness)
            yield harness

    return pytest.fixture(scope=scope)(fixture)
