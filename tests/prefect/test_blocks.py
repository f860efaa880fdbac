"""``SluicegateConfig``, the Block a flow's gates find their server by, against Prefect's API
(``prefect_test_harness``) and the real Sluicegate server: it round-trips and hides its token,
and an edited block reaches the gates once ``BLOCK_CACHE_SECONDS`` has passed (not before: no
read of Prefect's API per gate).
"""

from __future__ import annotations

import uuid

import pytest
from prefect.client.orchestration import get_client

from prefect_sluicegate import SluicegateConfig
from tests.gate_harness import GateHarness
from tests.prefect.support import (
    orders_read,
)


def test_the_config_block_round_trips_and_hides_its_token(sg: GateHarness) -> None:
    loaded = SluicegateConfig.load(sg.name)
    assert loaded.server_url == sg.server.url
    assert loaded.token.get_secret_value() == sg.request_token
    assert sg.request_token not in repr(loaded)
    with get_client(sync_client=True) as client:
        block_type = client.read_block_type_by_slug("sluicegate-config")
    assert block_type.name == "Sluicegate Config"


def test_an_edited_block_reaches_the_gates_once_its_cache_time_has_passed(
    sg: GateHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    from prefect_sluicegate import blocks

    name = f"rotating-{uuid.uuid4().hex[:8]}"
    SluicegateConfig(server_url=sg.url, token=sg.request_token).save(name)
    assert orders_read(name) == "allowed"
    # The token is revoked and the block edited: gates already running keep the block they
    # read for BLOCK_CACHE_SECONDS (no read of Prefect's API per gate) ...
    SluicegateConfig(server_url=sg.url, token="sgreq_revoked").save(name, overwrite=True)
    assert orders_read(name) == "allowed"
    # ... and read the edited block once that time has passed: refused, the flow fails.
    monkeypatch.setattr(blocks, "BLOCK_CACHE_SECONDS", 0.0)
    state = orders_read(name, return_state=True)
    assert state.is_failed()
    with pytest.raises(Exception, match="HTTP 401"):
        state.result()
