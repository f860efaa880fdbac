"""``dagster_sluicegate.gate``, without a server: the run tags it reads and writes for a step
(waiting, request, settled) are keys Dagster accepts, for any step key, and never shared by
two steps.
"""

from __future__ import annotations

import pytest


@pytest.mark.parametrize(
    "step", ["nightly_export", "export_op[3]", "crm__public__customers", "x" * 120, "a b/c"]
)
def test_run_tags_of_any_step_key_are_keys_dagster_accepts(step: str) -> None:
    from dagster._utils.tags import is_valid_tag_key

    from dagster_sluicegate.gate import step_tag

    for kind in ("waiting", "request", "settled"):
        assert is_valid_tag_key(step_tag(kind, step)), step_tag(kind, step)
    assert step_tag("request", step) != step_tag("request", step + "1")  # never shared
