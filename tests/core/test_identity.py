# The inputs are look-alike characters on purpose: they are what this file tests.
# ruff: noqa: RUF001, RUF003
"""One person counts once: how identities are read and compared, unit by unit and through the
real API (ASGI app, lifespan running) with the look-alike owners that once got through."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from sluicegate.identity import (
    identities_in,
    identity_keys,
    identity_problem,
    lookalikes,
    normalize,
    skeleton,
)
from sluicegate.server import create_app
from sluicegate.settings import load_settings
from sluicegate.store.schema import audit_events
from tests.core.support.serverproc import PII_EXPORT, POLICY

CAROL = identity_keys("carol", "carol@example.com", "U01CAROL")

# ----------------------------------------------------------------------------- normalizing


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Carol", "carol"),
        ("  carol\t", "carol"),
        ("car\u200bol", "carol"),  # zero-width space
        ("car\u200d\u2060ol\ufeff", "carol"),  # joiner, word joiner, BOM
        ("\u202ecarol\u202c", "carol"),  # bidi override and pop
        ("car\u00adol", "carol"),  # soft hyphen
        ("car\ufe0fol\U000e0101", "carol"),  # variation selectors
        ("car\u3164ol", "carol"),  # Hangul filler: a blank that is a letter
        ("car ol", "carol"),
        ("ｃａｒｏｌ", "carol"),  # full-width
        ("ＣＡＲＯＬ＠ＥＸＡＭＰＬＥ．ＣＯＭ", "carol@example.com"),
        ("Straße", "strasse"),
        ("саrоl", "саrоl"),  # Cyrillic stays Cyrillic: look-alikes are the skeleton's job
    ],
)
def test_normalize(raw: str, expected: str) -> None:
    assert normalize(raw) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("саrоl", "carol"),  # Cyrillic с а о
        ("САRОL", "carol"),  # Cyrillic capitals
        ("ϲarοl", "carol"),  # Greek lunate sigma, omicron
        ("ΗΑΝS", "hans"),  # Greek capitals: Η is an H before it folds to η
        ("carol", "carol"),
        ("caro1", "carol"),
        ("CAROI", "carol"),
        ("rnary", "mary"),
        ("vvendy", "wendy"),
        ("caról", "carol"),  # accents off
        ("cаrol@exаmple.com", "carol@example.com"),
        ("ɑlice", "allce"),  # i and l meet: a capital I passes for l
    ],
)
def test_skeleton_maps_look_alikes_to_one_form(raw: str, expected: str) -> None:
    assert skeleton(raw) == expected


@pytest.mark.parametrize(
    ("field", "names"),
    [
        ("carol, Erin@Example.com", {"carol", "erin@example.com"}),
        ("dave;carol", {"dave", "carol"}),
        ("dave | carol", {"dave", "carol"}),
        ("Carol <carol@example.com>", {"carol", "carol@example.com"}),
        ('"Poe, Carol" <carol@example.com>', {"carol", "carol@example.com"}),
        ("carol@example.com (Carol Poe)", {"carol@example.com", "carol"}),
        ("<@U01CAROL>", {"u01carol"}),
        ("<@U01CAROL|carol>", {"u01carol", "carol"}),
        ("@carol", {"carol"}),
        ("mailto:carol@example.com", {"carol@example.com"}),
        ("<mailto:carol@example.com|carol@example.com>", {"carol@example.com"}),
        ("user:carol@example.com, team:stewards", {"carol@example.com", "stewards"}),
        ("car\u200aol", {"carol"}),  # a hair space is a disguise, not a separator
    ],
)
def test_a_free_text_field_names_every_identity_in_it(field: str, names: set[str]) -> None:
    found = identities_in(field)
    assert names <= found, found
    assert all(name == normalize(name) for name in found)


# ----------------------------------------------------------------------------- comparing


@pytest.mark.parametrize(
    "field",
    [
        "car\u200bol",
        "ｃａｒｏｌ",
        "саrоl",
        "<@U01CAROL>",
        "<@u01carol|someone>",
        "@carol",
        "Carol <carol@example.com>",
        "mailto:carol@example.com",
        "user:carol",
        "user:саrоl@ехаmple.com",
        "dave;carol",
        "dave、carol",  # ideographic comma
        "dave; <@U01CAROL>",
        "carol+etl@example.com",
        "caro1",
        "carꝋl",  # a look-alike no rule maps: a wildcard, so still carol
        "carօl",  # Armenian o
    ],
)
def test_every_look_alike_of_carol_is_carol(field: str) -> None:
    assert lookalikes([field]).match(CAROL)


@pytest.mark.parametrize(
    "field",
    [
        "dave",
        "caroline",
        "carl",
        "team:stewards",
        "Иван",
        "josé",
        "u01dave",
        "carol-bot@ci.example",
    ],
)
def test_other_people_are_not_carol(field: str) -> None:
    assert not lookalikes([field]).match(CAROL)


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("carol@example.com", None),
        ("U01CAROL", None),
        ("cаrol@example.com", "holds 'а' (U+0430 CYRILLIC SMALL LETTER A), which is not ASCII"),
        ("ｃarol", "holds 'ｃ' (U+FF43 FULLWIDTH LATIN SMALL LETTER C), which is not ASCII"),
        ("U01\u200bCAROL", "holds an invisible character (U+200B ZERO WIDTH SPACE)"),
        ("carol\x00", "holds an invisible character (U+0000 unnamed character)"),
        ("carol poe", "holds whitespace (U+0020 SPACE)"),
    ],
)
def test_a_reviewer_identity_must_be_what_it_looks_like(value: str, problem: str | None) -> None:
    found = identity_problem(value)
    if problem is None:
        assert found is None
    else:
        assert found is not None and found.startswith(problem), found


# ----------------------------------------------------------------------------- the real API


@pytest.fixture
def sso_client(isolated: None, tmp_path: Path) -> Iterator[TestClient]:
    """The example policy's server on SQLite, trusting the ``X-Forwarded-Email`` SSO header, as
    a test client with its lifespan running."""
    settings = load_settings(
        db_url=f"sqlite:///{tmp_path}/sluicegate.db",
        policy=str(POLICY),
        sso_header="X-Forwarded-Email",
    )
    app = create_app(settings)
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client
    app.state.sluicegate.store.close()


def bearer(client: TestClient, principal: str, scope: str) -> dict[str, str]:
    token = client.app.state.sluicegate.store.create_token(principal, scope)  # type: ignore[attr-defined]
    return {"Authorization": f"Bearer {token}"}


def open_gate(
    client: TestClient, requester: dict[str, Any], principal: str = "airflow-prod"
) -> dict[str, Any]:
    body = {
        "idempotency_key": f"airflow:crm:{uuid.uuid4().hex}:export",
        "action": PII_EXPORT,
        "requester": {"orchestrator": "airflow", "job": "crm_export.export_customers", **requester},
    }
    r = client.post("/api/v1/requests", json=body, headers=bearer(client, principal, "request"))
    assert r.status_code == 201, r.text
    opened: dict[str, Any] = r.json()
    assert opened["status"] == "pending"
    return opened


def approve(client: TestClient, request_id: str, headers: dict[str, str]) -> Any:
    return client.post(
        f"/api/v1/requests/{request_id}/decisions", json={"verdict": "approve"}, headers=headers
    )


def rejected_actors(client: TestClient, request_id: str) -> list[str]:
    stmt = (
        select(audit_events.c.actor)
        .where(audit_events.c.kind == "decision.rejected")
        .where(audit_events.c.request_id == request_id)
    )
    with client.app.state.sluicegate.store.read() as conn:  # type: ignore[attr-defined]
        return [row.actor for row in conn.execute(stmt)]


@pytest.mark.parametrize(
    ("requester", "principal", "why"),
    [
        ({"owner": "Carol <carol@example.com>"}, "airflow-prod", "is the job owner"),
        ({"owner": "ｃａｒｏｌ"}, "airflow-prod", "is the job owner"),
        ({"owner": "<@U01CAROL>"}, "airflow-prod", "is the job owner"),
        ({"owner": "саrоl"}, "airflow-prod", "is the job owner"),
        ({"owner": "car\u200bol"}, "airflow-prod", "is the job owner"),
        ({"owner": "team:stewards,user:carol@example.com"}, "dagster", "is the job owner"),
        ({"owner": "dave;carol"}, "airflow-prod", "is the job owner"),
        ({"triggered_by": "mailto:carol@example.com"}, "prefect", "triggered the run"),
        ({"owner": "dave"}, "Carol <carol@example.com>", "is the requester's principal"),
    ],
)
def test_carol_cannot_approve_a_gate_whose_requester_is_a_look_alike_of_her(
    sso_client: TestClient, requester: dict[str, Any], principal: str, why: str
) -> None:
    req = open_gate(sso_client, requester, principal)
    r = approve(sso_client, req["id"], bearer(sso_client, "carol", "review"))
    assert r.status_code == 403, r.text
    assert r.json()["error"] == "forbidden" and why in r.json()["detail"]
    assert rejected_actors(sso_client, req["id"]) == ["carol"]
    after = sso_client.get(
        f"/api/v1/requests/{req['id']}", headers=bearer(sso_client, "pipe", "request")
    )
    assert after.json()["status"] == "pending" and after.json()["approvals"] == 0
    # Her colleagues still may: the exclusion took carol out, nobody else.
    ok = approve(sso_client, req["id"], bearer(sso_client, "alice", "review"))
    assert ok.status_code == 200, ok.text


def test_one_reviewer_counts_once_however_the_token_or_sso_header_spells_her(
    sso_client: TestClient,
) -> None:
    req = open_gate(sso_client, {"owner": "dave"})
    first = approve(sso_client, req["id"], bearer(sso_client, "Alice@Example.COM", "review"))
    assert first.status_code == 200, first.text
    assert [d["reviewer"] for d in first.json()["decisions"]] == ["alice"]

    for again in (
        bearer(sso_client, "alice", "review"),
        {"X-Forwarded-Email": "ALICE@example.com"},
    ):
        twice = approve(sso_client, req["id"], again)
        assert twice.status_code == 409, twice.text
        assert "already decided" in twice.json()["detail"]

    done = approve(sso_client, req["id"], {"X-Forwarded-Email": "bob@example.com"})
    assert done.status_code == 200, done.text
    assert done.json()["status"] == "approved"
    assert [d["reviewer"] for d in done.json()["decisions"]] == ["alice", "bob"]

    # A look-alike spelling is nobody: it never enters as alice.
    req = open_gate(sso_client, {"owner": "dave"})
    r = approve(sso_client, req["id"], bearer(sso_client, "аlice", "review"))  # Cyrillic а
    assert r.status_code == 403, r.text
    assert "is not a reviewer in the policy" in r.json()["detail"]
