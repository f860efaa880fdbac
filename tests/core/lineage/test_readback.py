"""The server reading its own OpenLineage events back: what it derived never becomes a fact.

Users point one OpenLineage transport at Marquez and at Sluicegate together, and the server's
own gate events go there too: they come back through ``POST /api/v1/lineage``. Each event tags
its datasets with their *effective* classifications (for Marquez), which include what the
server derived from its policy and the graph. Taken back as the datasets' own, a label the
server once inherited stayed for ever: a ``declassify`` rule for the masking job added later
changed nothing, and the masked table's export still waited.

The first test is the way it was found: a real server whose transport feeds itself (and a
Marquez stand-in), then restarted on the same database with the new policy. The others pin
the receiver's rule on real events, built by the gate's own event builder.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest

from sluicegate.client import SluicegateClient
from sluicegate.lineage.events import event_dict, facts_for_policy_answer, gate_event
from sluicegate.lineage.index import LineageIndex
from sluicegate.lineage.ingest import parse_event
from sluicegate.model import Action, Asset, ParentRun, Requester
from sluicegate.policy import Policy
from sluicegate.store import Store
from sluicegate.store.lineage import LineageTables
from tests.core.support.lineage_backend import LineageBackend, running_backend
from tests.core.support.lineage_schema import validate_event
from tests.core.support.serverproc import ServerProcess, free_port, running

PG = "postgres://prod:5432"
RAW = (PG, "raw.customers")  # pii by the policy's classify rule
MASKED = (PG, "masked.customers")  # written by etl::mask_customers from RAW
COPY = (PG, "copy.customers")  # written by etl::copy_customers from RAW: really pii
PRODUCER = "https://github.com/example/etl/tree/1.0"
SCHEMA_URL = "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent"
TAGS_SCHEMA = "https://openlineage.io/spec/facets/1-0-0/TagsDatasetFacet.json"

POLICY = """\
version: 1
default: allow
reviewers:
  - {id: alice, name: Alice Doe, email: alice@example.com, groups: [data-stewards]}
  - {id: bob, name: Bob Roe, email: bob@example.com, groups: [data-stewards]}
classify:
  - datasets: ["postgres://prod:5432::raw.customers"]
    add: [pii]
rules:
  - name: pii-export
    match: {actions: [export], classifications: [pii]}
    outcome: require
    require: {approvals: 1, groups: [data-stewards]}
"""
#: The same policy once the masking job is known to mask.
DECLASSIFYING_POLICY = POLICY.replace(
    "rules:\n",
    'declassify:\n  - jobs: ["etl::mask_customers"]\n    remove: [pii]\nrules:\n',
)
#: The same policy without its classify rule (the table turned out not to hold pii).
UNCLASSIFIED_POLICY = POLICY.replace(
    'classify:\n  - datasets: ["postgres://prod:5432::raw.customers"]\n    add: [pii]\n', ""
)
assert POLICY != DECLASSIFYING_POLICY and POLICY != UNCLASSIFIED_POLICY


def run_event(
    job: str,
    inputs: list[tuple[str, str]],
    outputs: list[tuple[str, str]],
    *,
    output_tags: list[dict[str, str]] | None = None,
) -> dict[str, Any]:
    """A COMPLETE RunEvent of job ``etl::<job>`` as another producer (an ETL tool) sends it."""

    def ds(pair: tuple[str, str], tags: list[dict[str, str]] | None = None) -> dict[str, Any]:
        d: dict[str, Any] = {"namespace": pair[0], "name": pair[1]}
        if tags:
            d["facets"] = {"tags": {"_producer": PRODUCER, "_schemaURL": TAGS_SCHEMA, "tags": tags}}
        return d

    return {
        "eventType": "COMPLETE",
        "eventTime": "2026-12-01T10:00:00.000Z",
        "producer": PRODUCER,
        "schemaURL": SCHEMA_URL,
        "run": {"runId": str(uuid.uuid4())},
        "job": {"namespace": "etl", "name": job},
        "inputs": [ds(i) for i in inputs],
        "outputs": [ds(o, output_tags) for o in outputs],
    }


def export_of(pair: tuple[str, str]) -> dict[str, Any]:
    return {
        "kind": "export",
        "summary": f"Export {pair[1]} to the partner bucket",
        "inputs": [{"namespace": pair[0], "name": pair[1]}],
        "outputs": [{"namespace": "s3://partner-share", "name": f"exports/{pair[1]}.csv"}],
    }


def requester(step: str) -> dict[str, Any]:
    """An Airflow-like step ``etl.<step>`` whose OpenLineage job is ``etl::<step>``."""
    return {
        "orchestrator": "airflow",
        "job": f"etl.{step}",
        "run_id": "manual__1",
        "owner": "carol",
        "parent": {"namespace": "etl", "name": step, "run_id": str(uuid.uuid4())},
    }


class SelfFedServer:
    """A server whose OpenLineage transport is composite: a Marquez stand-in and itself."""

    def __init__(self, db_url: str, tmp: Path, marquez: LineageBackend) -> None:
        self.policy = tmp / "policy.yaml"
        self.policy.write_text(POLICY)
        with Store(db_url) as store:
            self.token = store.create_token("etl-prod", "request")
        port = free_port()
        legs = "OPENLINEAGE__TRANSPORT__TRANSPORTS__"
        env = {
            "OPENLINEAGE__TRANSPORT__TYPE": "composite",
            f"{legs}MARQUEZ__TYPE": "http",
            f"{legs}MARQUEZ__URL": marquez.url,
            f"{legs}SLUICEGATE__TYPE": "http",
            f"{legs}SLUICEGATE__URL": f"http://127.0.0.1:{port}",
            f"{legs}SLUICEGATE__AUTH": json.dumps({"type": "api_key", "apiKey": self.token}),
        }
        self.server = ServerProcess(db_url, self.policy, tmp, port=port, env=env)
        self.marquez = marquez

    def http(self) -> httpx.Client:
        return self.server.client(self.token)

    def labels(self, dataset: tuple[str, str]) -> dict[str, dict[str, Any]]:
        with self.http() as c:
            r = c.get(
                "/api/v1/lineage/classifications",
                params={"namespace": dataset[0], "name": dataset[1]},
            )
        assert r.status_code == 200, r.text
        return {c["classification"]: c for c in r.json()["classifications"]}

    def gate(self, key: str, action: dict[str, Any], step: str) -> str:
        with SluicegateClient(self.server.url, self.token) as pipeline:
            return pipeline.open_gate(key, action, requester(step)).status

    def wait_for_own_events(self, count: int) -> list[dict[str, Any]]:
        """The first ``count`` gate events, once Marquez has them and the server has stored
        the last (its datasets' edge is in the graph; the emitter sends in order)."""
        deadline = time.monotonic() + 15
        while len(self.marquez.received) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        events = [body for _, _, body in self.marquez.received]
        assert len(events) >= count, (len(events), self.server.stderr())
        last = events[count - 1]
        target = last["outputs"][0]
        params = {"namespace": target["namespace"], "name": target["name"], "depth": 1}
        with self.http() as c:
            while time.monotonic() < deadline:
                if c.get("/api/v1/lineage/upstream", params=params).json()["edges"]:
                    return events[:count]
                time.sleep(0.05)
        raise AssertionError(f"the server never stored its own event:\n{self.server.stderr()}")


@pytest.fixture
def fed(sqlite_url: str, tmp_path: Path) -> Iterator[SelfFedServer]:
    with running_backend("ok") as marquez:
        s = SelfFedServer(sqlite_url, tmp_path, marquez)
        with running(s.server):
            s.server.start()
            yield s


def _tags_of(event: dict[str, Any], dataset: tuple[str, str]) -> dict[str, str]:
    for ds in [*event.get("inputs", []), *event.get("outputs", [])]:
        if (ds["namespace"], ds["name"]) == dataset:
            return {t["key"]: t.get("source", "") for t in ds["facets"]["tags"]["tags"]}
    raise AssertionError(f"{dataset} is not in the event")


def test_a_declassify_rule_added_later_frees_a_masked_table_the_server_once_gated(
    fed: SelfFedServer,
) -> None:
    with fed.http() as c:
        for job, src, dst in [("mask_customers", RAW, MASKED), ("copy_customers", RAW, COPY)]:
            assert c.post("/api/v1/lineage", json=run_event(job, [src], [dst])).status_code == 201
    # The masking step itself is gated too (allowed: it exports nothing) ...
    masking = {
        "kind": "transform",
        "summary": "Mask the customers",
        "inputs": [{"namespace": RAW[0], "name": RAW[1]}],
        "outputs": [{"namespace": MASKED[0], "name": MASKED[1]}],
    }
    assert fed.gate("mask-1", masking, "mask_customers") == "allowed"
    # ... and, before anyone told the policy that the job masks, an export of its output
    # inherits pii and waits: the server's events tag the masked table pii, and come back.
    assert fed.gate("export-masked-1", export_of(MASKED), "export_masked") == "pending"
    events = fed.wait_for_own_events(3)  # START, COMPLETE of the masking gate; START
    for event in events:
        validate_event(event)
    # Marquez still sees what the policy matched on: the effective classification.
    assert _tags_of(events[-1], MASKED) == {"pii": "SLUICEGATE"}
    assert fed.labels(MASKED)["pii"]["path"], "inherited through lineage, not its own"

    fed.server.stop()
    fed.policy.write_text(DECLASSIFYING_POLICY)
    fed.server.start()

    assert "pii" not in fed.labels(MASKED), fed.labels(MASKED)
    assert fed.gate("export-masked-2", export_of(MASKED), "export_masked") == "allowed"
    # What really carries pii still does, through the job that copied it.
    (hop,) = fed.labels(COPY)["pii"]["path"]
    assert (hop["name"], hop["job"]) == (RAW[1], "etl::copy_customers")
    assert fed.gate("export-copy", export_of(COPY), "export_copy") == "pending"


def test_a_classify_rule_removed_later_no_longer_classifies(fed: SelfFedServer) -> None:
    assert fed.gate("export-raw-1", export_of(RAW), "export_raw") == "pending"
    (start,) = fed.wait_for_own_events(1)
    assert _tags_of(start, RAW) == {"pii": "SLUICEGATE"}

    fed.server.stop()
    fed.policy.write_text(UNCLASSIFIED_POLICY)
    fed.server.start()

    assert fed.labels(RAW) == {}
    assert fed.gate("export-raw-2", export_of(RAW), "export_raw") == "allowed"


def test_what_the_pipeline_declared_comes_back_as_the_datasets_own(fed: SelfFedServer) -> None:
    declared = export_of(MASKED)
    declared["inputs"][0]["classifications"] = ["secret"]
    assert fed.gate("export-declared", declared, "export_masked") == "allowed"
    start, _complete = fed.wait_for_own_events(2)
    assert _tags_of(start, MASKED) == {"secret": "PIPELINE"}
    # A fact about the table, from the one who wrote it: it stays, and flows downstream.
    with fed.http() as c:
        event = run_event("summarise", [MASKED], [(PG, "summary")])
        assert c.post("/api/v1/lineage", json=event).status_code == 201
    assert fed.labels(MASKED)["secret"]["path"] == []
    assert fed.labels((PG, "summary"))["secret"]["path"][0]["name"] == MASKED[1]


# -- the receiver's rule, on the gate's own events ---------------------------------------------

ACTION = Action(
    kind="transform",
    summary="Mask the customers",
    inputs=(Asset(namespace=RAW[0], name=RAW[1], classifications=("secret",)),),
    outputs=(Asset(namespace=MASKED[0], name=MASKED[1]),),
)
STEP = Requester(
    orchestrator="airflow",
    job="etl.mask_customers",
    parent=ParentRun(namespace="etl", name="mask_customers", run_id=uuid.uuid4()),
)
SOURCES = {
    f"{RAW[0]}::{RAW[1]}": [
        {"classification": "pii", "source": "classify[0] 'raw.customers'", "path": []},
        {"classification": "secret", "source": "given by the pipeline", "path": []},
    ],
    f"{MASKED[0]}::{MASKED[1]}": [
        {
            "classification": "pii",
            "source": "classify[0] 'raw.customers' on raw, through lineage",
            "path": [{"namespace": RAW[0], "name": RAW[1], "job": "etl::mask_customers"}],
        }
    ],
}


def _gate_event(requester: Requester = STEP) -> dict[str, Any]:
    facts = facts_for_policy_answer(
        ACTION, requester, status="allowed", rule=None, classifications=SOURCES
    )
    event = event_dict(gate_event(facts, "START"))
    validate_event(event)
    return event


def test_a_gate_event_gives_back_only_what_the_pipeline_declared() -> None:
    event = _gate_event()
    record = parse_event(event)
    assert [(ds, label) for ds, label, _ in record.tags] == [(RAW, "secret")]
    (_, _, reason) = record.tags[0]
    assert reason == "OpenLineage tags facet, source PIPELINE"
    # An earlier version's event (every tag SLUICEGATE, the declared ones too) gives nothing.
    for ds in [*event["inputs"], *event["outputs"]]:
        for tag in ds["facets"]["tags"]["tags"]:
            tag["source"] = "SLUICEGATE"
    assert parse_event(event).tags == ()
    # Another producer's tags count, whatever their source says.
    tags = [
        {"key": "pii", "value": "true", "source": "USER"},
        {"key": "classification", "value": "secret", "source": "DBT CORE"},
        {"key": "internal", "value": "true"},
    ]
    record = parse_event(run_event("land", [], [RAW], output_tags=tags))
    assert {label for _, label, _ in record.tags} == {"pii", "secret", "internal"}


def test_a_gate_events_datasets_move_through_the_gated_steps_job(sqlite_url: str) -> None:
    policy = Policy.from_text(DECLASSIFYING_POLICY, source="policy.yaml")
    with Store(sqlite_url) as store:
        LineageTables(store).record([parse_event(_gate_event())])
        index = LineageIndex(store, policy)
        index.refresh(0.0)
        # The data moved through the step the gate held, the job a declassify rule names (and
        # the one the orchestrator's own events report), so the masking step masks.
        (edge,) = index.upstream(MASKED, 1).edges
        assert edge == (RAW, ("etl", "mask_customers"), MASKED)
        assert "pii" not in {c.classification for c in index.sources_of(*MASKED)}
    record = parse_event(_gate_event())
    assert record.job == ("sluicegate", "etl.mask_customers.approval_gate")  # the event's own
    assert record.moved_by == ("etl", "mask_customers")
    orphan = parse_event(_gate_event(Requester(orchestrator="api", job="mask")))
    assert orphan.moved_by == orphan.job == ("sluicegate", "mask.approval_gate")
    other = parse_event(run_event("land", [RAW], [MASKED]))
    assert other.moved_by == other.job == ("etl", "land")


def test_a_graph_an_earlier_version_polluted_is_clean_when_loaded(db_url: str) -> None:
    """Earlier versions stored a gate event's derived tags as the datasets' own; those rows
    are told apart by their source and left out of the graph; a real tag for the same label
    arriving later replaces them."""
    policy = Policy.from_text(DECLASSIFYING_POLICY, source="policy.yaml")
    earlier = parse_event(run_event("mask_customers", [RAW], [MASKED]))
    polluted = replace(
        earlier,
        inputs=(),
        outputs=(),
        tags=((MASKED, "pii", "OpenLineage tags facet, source SLUICEGATE"),),
    )
    with Store(db_url) as store:
        tables = LineageTables(store)
        tables.record([earlier, polluted])
        index = LineageIndex(store, policy)
        index.refresh(0.0)
        assert "pii" not in {c.classification for c in index.sources_of(*MASKED)}

        tagged = parse_event(
            run_event("audit", [], [MASKED], output_tags=[{"key": "pii", "value": "true"}])
        )
        tables.record([tagged])
        index.refresh(0.0)
        (pii,) = [c for c in index.sources_of(*MASKED) if c.classification == "pii"]
        assert pii.source == "OpenLineage tags facet" and not pii.path
        fresh = LineageIndex(store, policy)  # a replica starting now
        fresh.refresh(0.0)
        assert [c.source for c in fresh.sources_of(*MASKED)] == ["OpenLineage tags facet"]
