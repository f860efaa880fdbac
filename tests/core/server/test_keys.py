"""The key that signs links, sessions and CSRF tokens is never in the database.

A SQLite server keeps a generated key in a file beside the database (mode 0600); a PostgreSQL
server refuses to start without ``SLUICEGATE_SECRET_KEY``; a key an older version left in the
database is deleted and trusted no more; a rotated-out key still verifies what it signed while
it is listed in ``SLUICEGATE_PREVIOUS_SECRET_KEYS``. Each through a real ``sluicegate serve``
(a PostgreSQL server's refusals: its entry point in this process).
"""

from __future__ import annotations

import sqlite3
import stat
import subprocess
import uuid
from pathlib import Path

import httpx
import pytest

from sluicegate.links import sign_link
from sluicegate.store import Store
from tests.core.support.browser import Browser, with_cookie
from tests.core.support.serverproc import (
    PII_EXPORT,
    POLICY,
    SLUICEGATE,
    TLS,
    ServerProcess,
    clean_env,
    free_port,
    refused_serve,
    running,
)

K1 = "first-key-" + "1" * 40
K2 = "second-key-" + "2" * 40
K3 = "unknown-key-" + "3" * 40


def open_gate(server: ServerProcess, token: str) -> str:
    body = {
        "idempotency_key": f"airflow:crm:{uuid.uuid4().hex}:export",
        "action": PII_EXPORT,
        "requester": {"orchestrator": "airflow", "job": "crm.export", "owner": "carol"},
    }
    with server.client(token) as c:
        r = c.post("/api/v1/requests", json=body)
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def link_opens_the_form(server: ServerProcess, request_id: str, link: str) -> bool:
    """True if the review page, opened with this link, offers the decision form."""
    r = httpx.get(f"{server.url}/r/{request_id}", params={"t": link}, timeout=30, verify=TLS)
    if r.status_code == 403:
        return False
    assert r.status_code == 200, r.text
    return 'name="verdict"' in r.text


def serve_args(db_url: str) -> list[str]:
    return ["--db", db_url, "--policy", str(POLICY), "--port", str(free_port())]


def serve_until_exit(db_url: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """``sluicegate serve`` expected to stop at once; a server that starts instead is stopped
    and reported."""
    cmd = [SLUICEGATE, "serve", *serve_args(db_url)]
    proc = subprocess.Popen(
        cmd,
        cwd=cwd,
        env=clean_env(**env),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        out, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        raise AssertionError(f"the server started and kept running:\n{err}") from None
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def test_a_sqlite_server_keeps_its_generated_key_in_a_private_file_not_the_database(
    sqlite_url: str, tmp_path: Path
) -> None:
    with Store(sqlite_url) as store:
        pipeline = store.create_token("airflow-prod", "request")
    server = ServerProcess(sqlite_url, POLICY, tmp_path)
    key_file = tmp_path / "sluicegate.db.key"
    with running(server):
        server.start()
        assert key_file.is_file(), sorted(p.name for p in tmp_path.iterdir())
        assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
        key = key_file.read_bytes().strip()
        rid = open_gate(server, pipeline)
        # The file's key is the one the server signs and verifies with.
        assert link_opens_the_form(server, rid, sign_link(key, rid, "alice"))
        # Nothing of it is in the database: no row, and not a byte of it in any of its files.
        with sqlite3.connect(tmp_path / "sluicegate.db") as raw:
            assert raw.execute("SELECT name FROM server_values").fetchall() == []
        for part in tmp_path.glob("sluicegate.db*"):
            if part != key_file:
                assert key not in part.read_bytes(), part.name
        server.stop()
        server.start()  # restarted: the same key, so the links it sent still open
        assert key_file.read_bytes().strip() == key
        assert link_opens_the_form(server, rid, sign_link(key, rid, "bob"))


def test_a_key_an_older_version_kept_in_the_database_is_deleted_and_trusted_no_more(
    sqlite_url: str, tmp_path: Path
) -> None:
    from alembic import command
    from alembic.config import Config

    from sluicegate.store import db, make_engine

    old_key = "generated-by-an-older-version-" + "x" * 40
    with Store(sqlite_url) as store:
        pipeline = store.create_token("airflow-prod", "request")
    # The database as the previous release left it: schema 0004, its key in server_values.
    engine = make_engine(sqlite_url)
    config = Config()
    config.set_main_option("script_location", str(Path(db.__file__).parent / "migrations"))
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.downgrade(config, "0004")
        conn.exec_driver_sql(
            "INSERT INTO server_values (name, value) VALUES ('secret_key', ?)", (old_key,)
        )
    engine.dispose()

    server = ServerProcess(sqlite_url, POLICY, tmp_path)
    with running(server):
        server.start()
        rid = open_gate(server, pipeline)
        # Whoever read the old key from the database cannot sign a link with it...
        assert not link_opens_the_form(server, rid, sign_link(old_key.encode(), rid, "alice"))
        # ...and the key is gone from the database.
        with sqlite3.connect(tmp_path / "sluicegate.db") as raw:
            assert raw.execute("SELECT name FROM server_values").fetchall() == []
        key = (tmp_path / "sluicegate.db.key").read_bytes().strip()
        assert link_opens_the_form(server, rid, sign_link(key, rid, "alice"))


def test_a_key_file_that_others_can_read_is_refused(sqlite_url: str, tmp_path: Path) -> None:
    key_file = tmp_path / "sluicegate.db.key"
    key_file.write_text("k" * 64 + "\n")
    key_file.chmod(0o644)
    proc = serve_until_exit(sqlite_url, tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith("sluicegate: error: the secret key file"), proc.stderr
    assert "can be read by others (mode 0644): chmod 600 it" in proc.stderr
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr


@pytest.mark.postgres
def test_a_postgresql_server_needs_its_key_from_the_settings(pg_url: str, tmp_path: Path) -> None:
    # The refusals in this process: a refusal's exit from the script is the key file's, above.
    proc = refused_serve(*serve_args(pg_url), cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr == (
        "sluicegate: error: a postgresql database needs a secret key: set SLUICEGATE_SECRET_KEY "
        "(or secret_key in the config file), the same on every replica; make one with: "
        "python -c 'import secrets; print(secrets.token_urlsafe(48))'\n"
    )
    # It stopped before it touched the database: not even the tables were made.
    import psycopg

    schema = pg_url.rsplit("%3D", 1)[1]
    with psycopg.connect("host=127.0.0.1 port=5432 user=postgres dbname=test") as conn:
        tables = conn.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = %s", (schema,)
        ).fetchone()
    assert tables == (0,)
    # With the key set, it serves, and keeps the key out of the database.
    server = ServerProcess(pg_url, POLICY, tmp_path, env={"SLUICEGATE_SECRET_KEY": K1})
    with running(server):
        server.start()
        with Store(pg_url) as store, store.read() as conn:
            assert conn.exec_driver_sql("SELECT name FROM server_values").all() == []
    short = refused_serve(*serve_args(pg_url), cwd=tmp_path, env={"SLUICEGATE_SECRET_KEY": "short"})
    assert short.returncode == 2
    assert short.stderr.startswith(
        "sluicegate: error: environment variable SLUICEGATE_SECRET_KEY: a secret key needs at "
        "least 32 characters"
    )


def test_what_the_previous_key_signed_still_verifies_after_rotation(
    sqlite_url: str, tmp_path: Path
) -> None:
    with Store(sqlite_url) as store:
        pipeline = store.create_token("airflow-prod", "request")
        alice = store.create_token("alice", "review")
    server = ServerProcess(sqlite_url, POLICY, tmp_path, env={"SLUICEGATE_SECRET_KEY": K1})
    with running(server):
        server.start()
        rid = open_gate(server, pipeline)
        with Browser(server.url) as browser:
            assert browser.sign_in(alice).status_code == 303
            session = browser.session()  # signed with K1
            page = browser.get(f"/r/{rid}").text  # its CSRF token signed with K1
        assert not (tmp_path / "sluicegate.db.key").exists()  # the setting's key is the key
        bob_link = sign_link(K1.encode(), rid, "bob")  # as a notification sent it

        server.stop()
        server.env = {"SLUICEGATE_SECRET_KEY": K2, "SLUICEGATE_PREVIOUS_SECRET_KEYS": K1}
        server.start()
        with with_cookie(server.url, session) as browser:
            assert browser.get("/inbox").status_code == 200
            r = browser.decide(rid, "approve", page)
            assert r.status_code == 200, r.text
            assert "You approved request" in r.text
        assert link_opens_the_form(server, rid, bob_link)
        # A key the server never had verifies nothing.
        assert not link_opens_the_form(server, rid, sign_link(K3.encode(), rid, "bob"))
        # New signatures are the new key's: a new link signed with K2 opens.
        assert link_opens_the_form(server, rid, sign_link(K2.encode(), rid, "bob"))

        server.stop()
        server.env = {"SLUICEGATE_SECRET_KEY": K2}  # K1 retired once what it signed expired
        server.start()
        with with_cookie(server.url, session) as browser:
            assert browser.get("/inbox").status_code == 303
        assert not link_opens_the_form(server, rid, bob_link)
