"""The digest at the end of every adapter's idempotency key: a changed action is a new request.

An idempotency key names one gate of one step, so that a retry of the step reattaches to the
request it opened instead of notifying the reviewers again. A key that named only the step
would let a retry whose action had changed (other datasets, another destination, a different
query in its context) reattach to the approval given for the old action. Each adapter ends its
key with :func:`action_digest` of the action it sends (:func:`gate_key` puts one together):
the same action reattaches, a changed one is a new key, so a new request that is asked about
again.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sluicegate.model import Action, parse_action

__all__ = ["DIGEST_LENGTH", "action_digest", "gate_key"]

#: Hex characters of the digest (64 bits: keys stay short, and a collision needs the same
#: step of the same run besides).
DIGEST_LENGTH = 16


def action_digest(action: Action | Mapping[str, Any]) -> str:
    """The first :data:`DIGEST_LENGTH` hex characters of the action's fingerprint: sha256 of
    the canonical JSON of its kind, summary, inputs, outputs, destination, environment and
    context, as the server computes it (so a key's digest is the start of its request's
    ``fingerprint``).

    :raises ActionError: ``action`` is not a valid action (the server would refuse it too).
    """
    parsed = action if isinstance(action, Action) else parse_action(action)
    return parsed.fingerprint().removeprefix("sha256:")[:DIGEST_LENGTH]


def gate_key(*step: str | int, action: Action | Mapping[str, Any]) -> str:
    """The idempotency key of one gate: the parts that name the step, first the orchestrator
    (``"airflow", dag_id, run_id, task_id, map_index``), then :func:`action_digest` of
    ``action``, joined by ``:``.

    :raises ActionError: ``action`` is not a valid action.
    """
    return ":".join([*(str(part) for part in step), action_digest(action)])
