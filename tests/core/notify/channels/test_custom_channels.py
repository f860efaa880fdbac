"""An operator switches on a channel of their own with ``notify.channels``: the real server
loads it by its dotted path and delivers to it; one that cannot load stops the server at
startup with one line naming it (fail closed: no server runs without a channel it was told to
use)."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from sluicegate.exceptions import ConfigError
from sluicegate.notify.channels import Change, Channel, ChannelConfig, Delivery, default_factory
from sluicegate.store import Store
from tests.core.support.paths import ROOT
from tests.core.support.serverproc import (
    PII_EXPORT,
    POLICY,
    SLUICEGATE,
    ServerProcess,
    clean_env,
    free_port,
    refused_serve,
    running,
)

REQUESTER = {"orchestrator": "airflow", "job": "crm.export", "run_id": "r1", "owner": "carol"}


class JsonLinesConfig(ChannelConfig):
    """Where the channel appends its lines."""

    path: str


class JsonLinesChannel(Channel):
    """A channel of one's own, as docs/notifications.md shows: one JSON line per notification
    of a new request, appended to a file."""

    kind = "jsonlines"
    config_class = JsonLinesConfig

    def targets(self, change: Change) -> Sequence[str]:
        return ["jsonlines"] if change.event == "request.created" else []

    def send(self, delivery: Delivery) -> Mapping[str, Any]:
        assert isinstance(self.config, JsonLinesConfig)
        view = delivery.view
        line = {
            "event": delivery.event,
            "request_id": view.request_id,
            "summary": view.summary,
            "progress": view.progress,
            "timeout": self.config.timeout,
        }
        with open(self.config.path, "a", encoding="utf-8") as out:
            out.write(json.dumps(line) + "\n")
        return {"written": True}


CHANNEL = f"{JsonLinesChannel.__module__}.{JsonLinesChannel.__qualname__}"


def _env(channels: list[dict[str, Any]]) -> dict[str, str]:
    # The server imports this module by its dotted path: the repository's root on its path.
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    return {"SLUICEGATE_NOTIFY__CHANNELS": json.dumps(channels), "PYTHONPATH": path}


def test_a_custom_channel_switched_on_in_the_settings_receives_the_server_s_notifications(
    sqlite_url: str, tmp_path: Path
) -> None:
    out = tmp_path / "notifications.jsonl"
    env = _env([{"type": CHANNEL, "path": str(out)}, {"type": "noop"}])
    env["SLUICEGATE_NOTIFY__TIMEOUT"] = "7"
    server = ServerProcess(sqlite_url, POLICY, tmp_path, env=env).start()
    with running(server), Store(sqlite_url) as store:
        pipeline = server.client(store.create_token("airflow-prod", "request"))
        r = pipeline.post(
            "/api/v1/requests",
            json={"idempotency_key": "k-custom", "action": PII_EXPORT, "requester": REQUESTER},
        )
        assert r.status_code == 201, r.text
        rid = r.json()["id"]
        deadline = time.monotonic() + 15
        while not out.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert out.exists(), server.stderr()
        (line,) = [json.loads(x) for x in out.read_text().splitlines()]
        assert line == {
            "event": "request.created",
            "request_id": rid,
            "summary": PII_EXPORT["summary"],
            "progress": "0 of 2 approvals",
            "timeout": 7.0,  # notify.timeout, unless the channel's config says otherwise
        }


def _serve_args(tmp_path: Path) -> list[str]:
    db = f"sqlite:///{tmp_path}/sluicegate.db"
    return ["--db", db, "--policy", str(POLICY), "--port", str(free_port())]


def test_a_custom_channel_that_cannot_load_stops_the_server_with_one_line(tmp_path: Path) -> None:
    proc = subprocess.run(
        [SLUICEGATE, "serve", *_serve_args(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        env=clean_env(**_env([{"type": "no_such_module.Channel"}])),
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 2, proc.stderr
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith("sluicegate: error: ")
    assert "'no_such_module.Channel' cannot be imported" in line, line


@pytest.mark.parametrize(
    ("channel", "named"),
    [
        ({"type": CHANNEL}, f"notification channel {CHANNEL}: path: Field required"),
        ({"type": CHANNEL, "path": "x", "colour": "red"}, "colour: Extra inputs"),
        ({"path": "x"}, "SLUICEGATE_NOTIFY__CHANNELS: channel 0 needs a type"),
    ],
    ids=["missing-field", "unknown-field", "no-type"],
)
def test_each_way_a_channel_setting_can_be_wrong_is_named_in_serve_s_one_line(
    tmp_path: Path, channel: dict[str, Any], named: str
) -> None:
    # In this process: the test above runs the script itself.
    proc = refused_serve(*_serve_args(tmp_path), cwd=tmp_path, env=_env([channel]))
    assert proc.returncode == 2, proc.stderr
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith("sluicegate: error: ") and named in line, line


class RefusingChannel(JsonLinesChannel):
    """A channel whose own check refuses its config when it is made."""

    def __init__(self, config: ChannelConfig) -> None:
        raise RuntimeError("the pager service is not reachable from here")


def test_a_custom_channel_whose_own_check_fails_is_a_config_error_naming_it() -> None:
    path = f"{RefusingChannel.__module__}:{RefusingChannel.__qualname__}"
    with pytest.raises(ConfigError) as info:
        default_factory().create({"type": path, "path": "x"})
    assert str(info.value) == (
        f"notification channel {path!r} cannot be configured: "
        "RuntimeError: the pager service is not reachable from here"
    )
