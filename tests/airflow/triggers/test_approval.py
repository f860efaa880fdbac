"""``ApprovalTrigger`` as Airflow's triggerer stores it: its serialized kwargs are JSON values,
and the classpath and kwargs rebuild a trigger that serializes the same. (Its long poll, the
way a deferred gate resumes, runs in every gate test of operators/test_approval.py.)
"""

from __future__ import annotations

import json


def test_the_trigger_serializes_to_json_values_that_rebuild_it() -> None:
    import importlib

    from sluicegate_airflow.triggers import ApprovalTrigger

    trigger = ApprovalTrigger("0193-abc", "sg_conn", 12.5, carry={"review_url": "http://x/r/1"})
    classpath, kwargs = trigger.serialize()
    assert json.loads(json.dumps(kwargs)) == kwargs
    module, _, name = classpath.rpartition(".")
    rebuilt = getattr(importlib.import_module(module), name)(**kwargs)
    assert rebuilt.serialize() == (classpath, kwargs)
