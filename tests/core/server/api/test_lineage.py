"""The lineage receiver and classification through lineage, as pipelines and reviewers see it.

``POST /api/v1/lineage`` answers as Marquez's ingest does (201 and no body; 400 for a body or a
value it cannot read, a run id that is not a UUID included; 422 for a required field that is
missing, naming it), never 500 whatever the body, and what it stores changes what the policy
sees: a dataset derived from a ``pii`` dataset is ``pii``, through any number of jobs, unless a
masking job declassifies its output. In process (ASGI) on both databases, and against the real
server with openlineage-python's own HTTP transport (more of that in test_lineage_interop.py).
"""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.core.support.api import Harness, assert_error
from tests.core.support.browser import sign_in
from tests.core.support.lineage_schema import spec_dir
from tests.core.support.serverproc import POLICY, ServerProcess, create_token

pytestmark = pytest.mark.usefixtures("isolated")  # none of the developer's settings leaks in

#: The OpenLineage spec's example events, kept with its schemas (tests/data/README.md).
SPEC_EXAMPLES = spec_dir() / "examples"
PRODUCER = "https://github.com/example/etl/tree/1.0"
SCHEMA_URL = "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent"
PG = "postgres://prod:5432"
CUSTOMERS = (PG, "crm.public.customers")  # pii by the example policy's classify rule

#: The example policy, its masking job renamed to the jobs these tests run.
MASKING_POLICY = POLICY.read_text().replace('["analytics::mask_customers"]', '["etl::mask_*"]')
assert POLICY.read_text() != MASKING_POLICY


def run_event(
    job: str,
    inputs: list[tuple[str, str]],
    outputs: list[tuple[str, str]],
    *,
    event_type: str = "COMPLETE",
    job_namespace: str = "etl",
    output_tags: list[dict[str, str]] | None = None,
) -> dict[str, Any]:
    def ds(pair: tuple[str, str], tags: list[dict[str, str]] | None = None) -> dict[str, Any]:
        d: dict[str, Any] = {"namespace": pair[0], "name": pair[1]}
        if tags:
            d["facets"] = {
                "tags": {
                    "_producer": PRODUCER,
                    "_schemaURL": "https://openlineage.io/spec/facets/1-0-0/TagsDatasetFacet.json",
                    "tags": tags,
                }
            }
        return d

    return {
        "eventType": event_type,
        "eventTime": "2026-12-01T10:00:00.000Z",
        "producer": PRODUCER,
        "schemaURL": SCHEMA_URL,
        "run": {"runId": str(uuid.uuid4())},
        "job": {"namespace": job_namespace, "name": job},
        "inputs": [ds(i) for i in inputs],
        "outputs": [ds(o, output_tags) for o in outputs],
    }


def post(h: Harness, event: Any, *, raw: bytes | None = None) -> Any:
    headers = {**h.auth(), "Content-Type": "application/json"}
    body = raw if raw is not None else json.dumps(event).encode()
    return h.c.post("/api/v1/lineage", content=body, headers=headers)


def export_of(pair: tuple[str, str]) -> dict[str, Any]:
    return {
        "kind": "export",
        "summary": f"Export {pair[1]} to the partner bucket",
        "inputs": [{"namespace": pair[0], "name": pair[1]}],
        "outputs": [{"namespace": "s3://partner-share", "name": f"exports/{pair[1]}.csv"}],
    }


def test_an_event_is_stored_with_201_and_no_body_and_feeds_the_graph(api: Harness) -> None:
    r = post(api, run_event("clean_customers", [CUSTOMERS], [(PG, "staging.customers")]))
    assert r.status_code == 201, r.text
    assert r.content == b""
    up = api.c.get(
        "/api/v1/lineage/upstream",
        params={"namespace": PG, "name": "staging.customers", "depth": 3},
        headers=api.auth(),
    )
    assert up.status_code == 200, up.text
    body = up.json()
    assert [(n["name"], n["distance"]) for n in body["nodes"]] == [
        ("staging.customers", 0),
        ("crm.public.customers", 1),
    ]
    assert body["edges"] == [
        {
            "source": {"namespace": PG, "name": "crm.public.customers"},
            "job": {"namespace": "etl", "name": "clean_customers"},
            "target": {"namespace": PG, "name": "staging.customers"},
        }
    ]


def test_the_specs_example_events_are_accepted(api1: Harness) -> None:
    examples = sorted((SPEC_EXAMPLES / "tests").glob("*.json"))
    assert examples, f"no example events under {SPEC_EXAMPLES}"
    for path in examples:
        r = post(api1, None, raw=path.read_bytes())
        assert r.status_code == 201, (path.name, r.text)


JOB_TYPE_WITHOUT_JOB_TYPE = {
    "jobType": {
        "_producer": PRODUCER,
        "_schemaURL": "https://openlineage.io/spec/facets/2-0-3/JobTypeJobFacet.json",
        "processingType": "BATCH",
        "integration": "AIRFLOW",
    }
}


def _refused_with_nothing_stored(h: Harness, event: Any, status: int, names: str) -> None:
    body = assert_error(post(h, event), status, "invalid_event")
    assert body["detail"].startswith(names), body
    # Nothing of a refused event reaches the graph.
    up = h.c.get(
        "/api/v1/lineage/upstream", params={"namespace": PG, "name": "x"}, headers=h.auth()
    )
    assert up.json()["edges"] == []


@pytest.mark.parametrize(
    ("change", "status", "names"),
    [
        # 422: a required field is missing (Marquez's bean validation).
        (lambda e: e["run"].pop("runId"), 422, "run.runId"),
        (lambda e: e.pop("eventTime"), 422, "eventTime"),
        (lambda e: e.pop("producer"), 422, "producer"),
        (lambda e: e.pop("job"), 422, "job"),
        (lambda e: e["job"].pop("name"), 422, "job.name"),
        (lambda e: e["inputs"][0].pop("namespace"), 422, "inputs[0].namespace"),
        # 400: a value of the wrong type or form (Marquez cannot read it).
        (lambda e: e["run"].update(runId="not-a-uuid"), 400, "run.runId"),
        (lambda e: e["run"].update(runId="{" + str(uuid.uuid4()) + "}"), 400, "run.runId"),
        (lambda e: e["run"].update(runId="urn:uuid:" + str(uuid.uuid4())), 400, "run.runId"),
        (lambda e: e.update(eventTime="yesterday"), 400, "eventTime"),
        (lambda e: e.update(producer=42), 400, "producer"),
        (lambda e: e.update(outputs={"not": "a list"}), 400, "outputs"),
        (lambda e: e["job"].update(name="j" * 1025), 400, "job.name"),
        (lambda e: e["outputs"][0].update(namespace="n" * 1025), 400, "outputs[0].namespace"),
        # The facets Sluicegate reads must be readable: a gate's job type, a dataset's tags.
        (lambda e: e["job"].update(facets={"jobType": "BATCH"}), 400, "job.facets.jobType"),
        (
            lambda e: e["outputs"][0].update(facets={"tags": {"tags": "pii"}}),
            400,
            "outputs[0].facets.tags.tags",
        ),
    ],
)
def test_an_event_marquez_would_refuse_is_refused_with_marquezs_code_naming_the_field(
    api1: Harness, change: Any, status: int, names: str
) -> None:
    event = run_event("j", [CUSTOMERS], [(PG, "x")])
    change(event)
    _refused_with_nothing_stored(api1, event, status, names)


#: What Marquez stores and the OpenLineage spec does not allow: taken by default, refused by
#: ``lineage.strict``.
LENIENT_ONLY = [
    (lambda e: e.pop("schemaURL"), 422, "schemaURL"),
    (lambda e: e.update(producer="my-etl-script"), 400, "producer"),
    (lambda e: e.update(eventType="PAUSED"), 400, "eventType"),
    (
        lambda e: e["job"].update(facets=JOB_TYPE_WITHOUT_JOB_TYPE),
        422,
        "job.facets.jobType.jobType",
    ),
    (
        lambda e: e["run"].update(facets={"parent": {"_schemaURL": SCHEMA_URL}}),
        422,
        "run.facets.parent._producer",
    ),
    (
        lambda e: e["run"].update(facets={"mine": {"_producer": PRODUCER, "answer": 42}}),
        422,
        "run.facets.mine._schemaURL",
    ),
]


@pytest.mark.parametrize(("change", "status", "names"), LENIENT_ONLY)
def test_what_marquez_stores_is_stored_by_default(
    api1: Harness, change: Any, status: int, names: str
) -> None:
    event = run_event("j", [CUSTOMERS], [(PG, "x")])
    change(event)
    assert post(api1, event).status_code == 201


@pytest.mark.parametrize(("change", "status", "names"), LENIENT_ONLY)
def test_lineage_strict_refuses_what_the_spec_does_not_allow(
    sqlite_url: str, make_api: Any, change: Any, status: int, names: str
) -> None:
    strict: Harness = make_api(sqlite_url, lineage={"strict": True})
    event = run_event("j", [CUSTOMERS], [(PG, "y")])
    assert post(strict, event).status_code == 201  # the unbroken event
    event = run_event("j", [CUSTOMERS], [(PG, "x")])
    change(event)
    _refused_with_nothing_stored(strict, event, status, names)


def test_a_body_that_is_not_json_is_400_and_no_token_is_401(api1: Harness) -> None:
    assert_error(post(api1, None, raw=b"{not json"), 400, "malformed_json")
    assert_error(post(api1, None, raw=b"\xff\xfe{}"), 400, "malformed_json")
    assert_error(post(api1, None, raw=b"[1, 2]"), 400, "invalid_event")
    r = api1.c.post("/api/v1/lineage", json=run_event("j", [CUSTOMERS], [(PG, "x")]))
    assert_error(r, 401)


def test_deep_nesting_lone_surrogates_and_oversized_names_are_400_never_500(api: Harness) -> None:
    # Python's decoder raised RecursionError on the first, the store's UTF-8 the second.
    deep = b'{"eventTime": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    assert_error(post(api, None, raw=deep), 400, "too_deep")
    event = run_event("j", [CUSTOMERS], [(PG, "x")])
    event["run"]["facets"] = {"mine": {"nested": json.loads("[" * 300 + "]" * 300)}}
    assert_error(post(api, event), 400, "too_deep")

    event = run_event("j", [CUSTOMERS], [(PG, "x")])
    event["run"]["facets"] = {"mine": {"_producer": PRODUCER, "note": "\ud800"}}
    body = assert_error(post(api, event), 400, "invalid_text")
    assert "surrogate" in body["detail"]
    event["outputs"][0]["name"] = "x\udfff"
    assert_error(post(api, event), 400, "invalid_text")
    # What PostgreSQL's columns cannot hold (varchar(1024) names, varchar(36) run ids).
    event = run_event("j", [CUSTOMERS], [(PG, "x" * 1025)])
    assert_error(post(api, event), 400, "invalid_event")
    event = run_event("j", [CUSTOMERS], [(PG, "x")])
    event["run"]["runId"] = f"urn:uuid:{uuid.uuid4()}"
    assert_error(post(api, event), 400, "invalid_event")
    # A surrogate pair is one character: stored.
    event = run_event("j", [CUSTOMERS], [(PG, "x")])
    event["job"]["name"] = "buggy_task\U0001f577"
    assert json.dumps(event).count("\\ud83d\\udd77") == 1
    assert post(api, event).status_code == 201
    # The receiver still works, and nothing refused reached the graph.
    up = api.c.get(
        "/api/v1/lineage/upstream", params={"namespace": PG, "name": "x"}, headers=api.auth()
    ).json()
    assert [e["job"]["name"] for e in up["edges"]] == ["buggy_task\U0001f577"]


def test_data_derived_from_pii_is_pii_through_a_chain_of_jobs(api: Harness) -> None:
    snapshot = (PG, "marts.customer_snapshot")
    # Without lineage the export of the snapshot is routine: the policy knows no pii there.
    before = api.open(action=export_of(snapshot))
    assert before.json()["status"] == "allowed", before.text

    for job, src, dst in [
        ("clean_customers", CUSTOMERS, (PG, "staging.customers")),
        ("join_orders", (PG, "staging.customers"), (PG, "staging.customer_orders")),
        ("build_snapshot", (PG, "staging.customer_orders"), snapshot),
    ]:
        assert post(api, run_event(job, [src], [dst])).status_code == 201

    r = api.open(action=export_of(snapshot))
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["status"] == "pending" and body["rule"] == "pii-export"
    key = f"{snapshot[0]}::{snapshot[1]}"
    assert "pii" in body["classifications"][key]
    (pii,) = [s for s in body["classification_sources"][key] if s["classification"] == "pii"]
    assert pii["source"].startswith("classify[0] 'crm.public.customers*'"), pii
    assert [(h["name"], h["job"]) for h in pii["path"]] == [
        ("crm.public.customers", "etl::clean_customers"),
        ("staging.customers", "etl::join_orders"),
        ("staging.customer_orders", "etl::build_snapshot"),
    ]
    # The reviewer sees where it came from on the review page, and the audit row records it.
    token = api.token("alice", "review")
    assert sign_in(api.c, token).status_code == 303
    page = api.c.get(f"/r/{body['id']}")
    assert page.status_code == 200
    assert "staging.customer_orders (job etl::build_snapshot)" in page.text
    (created,) = api.audit("request.created", body["id"])
    assert json.loads(created.data)["classifications"][key] == ["pii", "prod"]


def test_a_masking_job_declassifies_its_output(make_api: Any, db_url: str, tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(MASKING_POLICY)
    h: Harness = make_api(db_url, policy)
    masked, leaked = (PG, "marts.customers_masked"), (PG, "marts.customers_copy")
    assert post(h, run_event("mask_customers", [CUSTOMERS], [masked])).status_code == 201
    assert post(h, run_event("copy_customers", [CUSTOMERS], [leaked])).status_code == 201

    assert h.open(action=export_of(masked)).json()["status"] == "allowed"
    assert h.open(action=export_of(leaked)).json()["status"] == "pending"

    # The masked table fed again by a job that does not mask: pii again.
    assert post(h, run_event("enrich", [leaked], [masked])).status_code == 201
    again = h.open(action=export_of(masked)).json()
    assert again["status"] == "pending"
    key = f"{masked[0]}::{masked[1]}"
    (pii,) = [s for s in again["classification_sources"][key] if s["classification"] == "pii"]
    assert [h["job"] for h in pii["path"]] == ["etl::copy_customers", "etl::enrich"]


def test_tags_facets_classify_and_their_column_is_named(api: Harness) -> None:
    raw, report = ("s3://landing", "signups.json"), (PG, "analytics.signups")
    tagged = run_event(
        "land_signups",
        [],
        [raw],
        output_tags=[
            {"key": "pii", "value": "true", "field": "email", "source": "USER"},
            {"key": "owner", "value": "@growth"},  # not a classification
        ],
    )
    assert post(api, tagged).status_code == 201
    assert post(api, run_event("aggregate", [raw], [report])).status_code == 201

    r = api.c.get(
        "/api/v1/lineage/classifications",
        params={"namespace": report[0], "name": report[1]},
        headers=api.auth(),
    )
    assert r.status_code == 200, r.text
    found = {c["classification"]: c for c in r.json()["classifications"]}
    assert set(found) == {"pii", "prod"}  # prod: the example policy's rule on postgres://prod
    assert "column email" in found["pii"]["source"]
    assert [h["name"] for h in found["pii"]["path"]] == ["signups.json"]
    assert api.open(action=export_of(report)).json()["rule"] == "pii-export"


def test_cycles_end_and_depth_limits_the_walk(api1: Harness) -> None:
    a, b, c = (PG, "a"), (PG, "b"), (PG, "c")
    for job, src, dst in [("ab", a, b), ("bc", b, c), ("ca", c, a)]:
        assert post(api1, run_event(job, [src], [dst])).status_code == 201
    down = api1.c.get(
        "/api/v1/lineage/downstream",
        params={"namespace": PG, "name": "a", "depth": 1},
        headers=api1.auth(),
    ).json()
    assert [(n["name"], n["distance"]) for n in down["nodes"]] == [("a", 0), ("b", 1)]
    full = api1.c.get(
        "/api/v1/lineage/downstream",
        params={"namespace": PG, "name": "a", "depth": 20},
        headers=api1.auth(),
    ).json()
    assert {n["name"] for n in full["nodes"]} == {"a", "b", "c"}
    assert len(full["edges"]) == 3
    bad = api1.c.get(
        "/api/v1/lineage/downstream",
        params={"namespace": PG, "name": "a", "depth": 0},
        headers=api1.auth(),
    )
    assert bad.status_code == 422


@pytest.mark.postgres
def test_lineage_received_by_one_replica_classifies_on_another(make_api: Any, pg_url: str) -> None:
    one: Harness = make_api(pg_url)
    other: Harness = make_api(pg_url)
    copy = (PG, "marts.customers_copy")
    assert post(one, run_event("copy_customers", [CUSTOMERS], [copy])).status_code == 201

    # The other replica reads the graph from the shared database, a little stale by design
    # (it refreshes at most every 50 ms): wait, bounded, until it classifies the copy ...
    def classified() -> set[str]:
        r = other.c.get(
            "/api/v1/lineage/classifications",
            params={"namespace": copy[0], "name": copy[1]},
            headers=other.auth(),
        )
        assert r.status_code == 200, r.text
        return {c["classification"] for c in r.json()["classifications"]}

    deadline = time.monotonic() + 5
    while "pii" not in classified() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert "pii" in classified()
    # ... then its policy treats the copy as PII
    r = other.open(action=export_of(copy))
    assert r.json()["status"] == "pending", r.text


def test_openlineage_pythons_http_transport_feeds_the_running_server(
    sqlite_url: str, tmp_path: Path
) -> None:
    from openlineage.client import OpenLineageClient
    from openlineage.client.event_v2 import (
        InputDataset,
        Job,
        OutputDataset,
        Run,
        RunEvent,
        RunState,
    )
    from openlineage.client.transport.http import ApiKeyTokenProvider, HttpConfig, HttpTransport

    server = ServerProcess(sqlite_url, POLICY, tmp_path).start()
    try:
        token = create_token(sqlite_url, "airflow-openlineage", "request", cwd=tmp_path)
        config = HttpConfig(url=server.url, auth=ApiKeyTokenProvider({"apiKey": token}))
        client = OpenLineageClient(transport=HttpTransport(config))
        client.emit(
            RunEvent(
                eventType=RunState.COMPLETE,
                eventTime="2026-12-01T10:00:00.000Z",
                run=Run(runId=str(uuid.uuid4())),
                job=Job(namespace="airflow", name="crm.copy_customers"),
                producer=PRODUCER,
                inputs=[InputDataset(namespace=CUSTOMERS[0], name=CUSTOMERS[1])],
                outputs=[OutputDataset(namespace=PG, name="marts.customers_copy")],
            )
        )
        import httpx

        r = httpx.get(
            f"{server.url}/api/v1/lineage/classifications",
            params={"namespace": PG, "name": "marts.customers_copy"},
            headers={"Authorization": f"Bearer {token}"},
        )
        assert r.status_code == 200, r.text
        (pii,) = [c for c in r.json()["classifications"] if c["classification"] == "pii"]
        assert pii["path"] == [
            {"namespace": PG, "name": "crm.public.customers", "job": "airflow::crm.copy_customers"}
        ]
    finally:
        server.stop()
