"""The lineage receiver with the clients and the events users already have.

A real server (a subprocess on a free port) receives what Marquez stores:
openlineage-python's own HTTP transport with ``compression: gzip`` (``Content-Encoding:
gzip``), Marquez's own example events (``tests/data/marquez``: no ``schemaURL``, custom facets,
a DatasetEvent, a JobEvent), custom facets without ``_schemaURL`` and a ``producer`` that is
not a URI. A gzip bomb stops at the server's body limit after inflation (413), and
``/metrics``, read with Prometheus' own text parser, counts every refusal by reason.
"""

from __future__ import annotations

import gzip
import json
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from sluicegate.server.app import MAX_BODY_BYTES
from tests.core.support.paths import DATA
from tests.core.support.serverproc import POLICY, TLS, ServerProcess, create_token

MARQUEZ_EVENTS = DATA / "marquez"

#: The client reads OPENLINEAGE_* and ./openlineage.yml: none of the developer's.
pytestmark = pytest.mark.usefixtures("isolated")

PG = "postgres://prod:5432"
CUSTOMERS = (PG, "crm.public.customers")  # pii by the example policy's classify rule


class Receiver:
    """A running server and a pipeline's token for it."""

    def __init__(self, server: ServerProcess, token: str) -> None:
        self.server, self.token = server, token
        self.url = server.url
        self.auth = {"Authorization": f"Bearer {token}"}

    def post(self, body: bytes, **headers: str) -> httpx.Response:
        headers = {"Content-Type": "application/json", **self.auth, **headers}
        return httpx.post(f"{self.url}/api/v1/lineage", content=body, headers=headers, verify=TLS)

    def classifications(self, dataset: tuple[str, str]) -> dict[str, Any]:
        r = httpx.get(
            f"{self.url}/api/v1/lineage/classifications",
            params={"namespace": dataset[0], "name": dataset[1]},
            headers=self.auth,
            verify=TLS,
        )
        assert r.status_code == 200, r.text
        return {c["classification"]: c for c in r.json()["classifications"]}

    def upstream(self, dataset: tuple[str, str]) -> list[tuple[str, str, str]]:
        r = httpx.get(
            f"{self.url}/api/v1/lineage/upstream",
            params={"namespace": dataset[0], "name": dataset[1], "depth": 1},
            headers=self.auth,
            verify=TLS,
        )
        assert r.status_code == 200, r.text
        return sorted(
            (e["source"]["name"], e["job"]["namespace"], e["job"]["name"])
            for e in r.json()["edges"]
        )

    def refused(self) -> dict[str, float]:
        """``sluicegate_lineage_events_refused_total`` by reason, as Prometheus reads it."""
        text = httpx.get(f"{self.url}/metrics", verify=TLS).text
        found: dict[str, float] = {}
        for family in text_string_to_metric_families(text):
            if family.name == "sluicegate_lineage_events_refused":
                for sample in family.samples:
                    if sample.name.endswith("_total"):
                        found[sample.labels["reason"]] = sample.value
        return found


@pytest.fixture(scope="module")
def receiver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Receiver]:
    workdir = tmp_path_factory.mktemp("interop")
    db_url = f"sqlite:///{workdir}/sluicegate.db"
    server = ServerProcess(db_url, POLICY, workdir).start()
    try:
        yield Receiver(server, create_token(db_url, "openlineage", "request", cwd=workdir))
    finally:
        server.stop()


def test_openlineage_pythons_gzip_http_transport_is_stored(receiver: Receiver) -> None:
    from openlineage.client import OpenLineageClient
    from openlineage.client.event_v2 import (
        InputDataset,
        Job,
        OutputDataset,
        Run,
        RunEvent,
        RunState,
    )
    from openlineage.client.transport.http import HttpCompression, HttpConfig, HttpTransport

    config = HttpConfig.from_dict(
        {
            "url": receiver.url,
            "compression": "gzip",
            "auth": {"type": "api_key", "apiKey": receiver.token},
            "retry": {"total": 0},
        }
    )
    assert config.compression is HttpCompression.GZIP
    client = OpenLineageClient(transport=HttpTransport(config))
    copy = (PG, "marts.customers_gzipped")
    # emit() raises on any answer but 2xx (it was a 400: the gzip bytes read as JSON).
    client.emit(
        RunEvent(
            eventType=RunState.COMPLETE,
            eventTime="2026-12-01T10:00:00.000Z",
            run=Run(runId=str(uuid.uuid4())),
            job=Job(namespace="airflow", name="crm.copy_customers"),
            producer="https://github.com/apache/airflow/tree/providers-openlineage/2.0.0",
            inputs=[InputDataset(namespace=CUSTOMERS[0], name=CUSTOMERS[1])],
            outputs=[OutputDataset(namespace=copy[0], name=copy[1])],
        )
    )
    client.close()
    assert receiver.classifications(copy)["pii"]["path"] == [
        {"namespace": PG, "name": CUSTOMERS[1], "job": "airflow::crm.copy_customers"}
    ]


def test_marquezs_own_example_events_are_all_stored(receiver: Receiver) -> None:
    paths = sorted(MARQUEZ_EVENTS.glob("*.json"))
    assert len(paths) == 6, paths
    answers = {p.stem: receiver.post(p.read_bytes()) for p in paths}
    assert {name: (r.status_code, r.text) for name, r in answers.items()} == {
        p.stem: (201, "") for p in paths
    }


def test_marquez_examples_feed_the_graph(receiver: Receiver) -> None:
    # The example without schemaURL, and the JobEvent (no run at all).
    for name in ("event_without_schema_url", "event_job_event", "event_unicode"):
        assert receiver.post((MARQUEZ_EVENTS / f"{name}.json").read_bytes()).status_code == 201
    output = ("my-datasource-namespace", "instance.schema.output-1")
    assert receiver.upstream(output) == [
        ("instance.schema.input-1", "my-scheduler-namespace", "myjob"),
        ("instance.schema.input-1", "my-scheduler-namespace", "myjob.buggy_task\U0001f577"),
        ("instance.schema.input-2", "my-scheduler-namespace", "myjob"),
        ("instance.schema.input-2", "my-scheduler-namespace", "myjob.buggy_task\U0001f577"),
    ]


def test_custom_facets_without_schema_url_and_a_plain_producer_classify(
    receiver: Receiver,
) -> None:
    landed = ("s3://landing", "signups_custom.json")
    event = {
        "eventType": "COMPLETE",
        "eventTime": "2026-12-01T10:00:00Z",
        "producer": "my-etl-script",  # not a URI: Marquez stores it
        "run": {
            "runId": str(uuid.uuid4()),
            "facets": {"acme_cost": {"_producer": "my-etl-script", "dollars": 3}},
        },
        "job": {"namespace": "etl", "name": "land_signups", "facets": {"acme_owner": "growth"}},
        "inputs": [],
        "outputs": [
            {
                "namespace": landed[0],
                "name": landed[1],
                "facets": {
                    "acme_quality": {"rows": 10},
                    "tags": {
                        "_producer": "my-etl-script",
                        "tags": [{"key": "pii", "value": "true", "field": "email"}],
                    },
                },
            }
        ],
    }
    r = receiver.post(json.dumps(event).encode())
    assert r.status_code == 201, r.text
    found = receiver.classifications(landed)
    assert "column email" in found["pii"]["source"]


def test_a_gzip_bomb_stops_at_the_body_limit(receiver: Receiver) -> None:
    before = receiver.refused()
    event = {
        "eventType": "COMPLETE",
        "eventTime": "2026-12-01T10:00:00Z",
        "producer": "https://example.com/etl",
        "run": {"runId": str(uuid.uuid4())},
        "job": {"namespace": "etl", "name": "padded"},
    }
    text = json.dumps(event).encode()
    # Exactly at the limit once inflated: stored; one byte more: 413, as for a plain body.
    at_limit = text[:-1] + b" " * (MAX_BODY_BYTES - len(text)) + b"}"
    assert len(at_limit) == MAX_BODY_BYTES
    assert receiver.post(gzip.compress(at_limit), **{"Content-Encoding": "gzip"}).status_code == 201
    over = gzip.compress(at_limit[:-1] + b" }")
    r = receiver.post(over, **{"Content-Encoding": "gzip"})
    assert (r.status_code, r.json()["error"]) == (413, "too_large"), r.text
    # 512 MiB of zeros in half a MiB of gzip (16 members): refused without inflating it.
    bomb = gzip.compress(b"0" * (32 * 1024 * 1024), compresslevel=9) * 16
    assert len(bomb) < MAX_BODY_BYTES
    r = receiver.post(bomb, **{"Content-Encoding": "gzip"})
    assert (r.status_code, r.json()["error"]) == (413, "too_large"), r.text

    r = receiver.post(b"{not gzip}", **{"Content-Encoding": "gzip"})
    assert (r.status_code, r.json()["error"]) == (400, "bad_encoding"), r.text
    r = receiver.post(gzip.compress(text)[:-9], **{"Content-Encoding": "gzip"})
    assert (r.status_code, r.json()["error"]) == (400, "bad_encoding"), r.text
    r = receiver.post(text, **{"Content-Encoding": "br"})
    assert (r.status_code, r.json()["error"]) == (415, "unsupported_encoding"), r.text

    after = receiver.refused()
    added = {k: after.get(k, 0) - before.get(k, 0) for k in after}
    assert {k: v for k, v in added.items() if v} == {
        "too_large": 2,
        "bad_encoding": 2,
        "unsupported_encoding": 1,
    }


def test_refusals_are_counted_by_reason(receiver: Receiver) -> None:
    before = receiver.refused()
    good = {
        "eventTime": "2026-12-01T10:00:00Z",
        "producer": "p",
        "run": {"runId": str(uuid.uuid4())},
        "job": {"namespace": "etl", "name": "j"},
    }
    cases = [
        ({**good, "run": {"runId": "run-1"}}, 400),  # not a UUID: Marquez's 400 too
        ({k: v for k, v in good.items() if k != "eventTime"}, 422),
        ({**good, "job": {"namespace": "etl"}}, 422),
        ({**good, "eventTime": 20261201}, 400),
    ]
    for event, status in cases:
        r = receiver.post(json.dumps(event).encode())
        assert r.status_code == status, r.text
        assert set(r.json()) == {"error", "detail"}
    assert receiver.post(b'{"a": "\\ud800"}').status_code == 400
    assert receiver.post(b"[" * 5000 + b"]" * 5000).status_code == 400
    assert receiver.post(b"{").status_code == 400

    after = receiver.refused()
    added = {k: after.get(k, 0) - before.get(k, 0) for k in after}
    assert {k: v for k, v in added.items() if v} == {
        "invalid_field": 2,
        "missing_field": 2,
        "invalid_text": 1,
        "too_deep": 1,
        "malformed_json": 1,
    }
