"""Rows and models: a request and its decisions to table rows, and back.

Everything hashed or fingerprinted (the action, the requester, the classifications) is stored
as canonical JSON text, so that SQLite and PostgreSQL give back the same bytes. Rows read back
were validated on the way in and are written only by the store, so they are rebuilt with
``model_construct``, without validating again (which cost more than the query).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Row

from sluicegate.exceptions import NotFoundError
from sluicegate.model import (
    Action,
    ApprovalRequest,
    Asset,
    Channel,
    ClassificationSource,
    Decision,
    LineageHop,
    ParentRun,
    Requester,
    Status,
    Verdict,
    canonical_json,
)

__all__ = [
    "DECISION_COLUMNS",
    "dataset_rows",
    "decision_of",
    "decision_row",
    "request_key",
    "request_of",
    "request_row",
    "request_with_decisions",
]

#: The columns of a decision, read back labelled ``d_<name>`` beside a request's own.
DECISION_COLUMNS = ("reviewer", "verdict", "comment", "channel", "fingerprint", "decided_at")


def request_key(request_id: uuid.UUID | str) -> str:
    """The canonical form of a request id; :class:`NotFoundError` for one that cannot exist."""
    try:
        return str(uuid.UUID(str(request_id)))
    except ValueError as err:
        raise NotFoundError(f"no request {request_id!r} (not a request id)") from err


def request_row(req: ApprovalRequest) -> dict[str, Any]:
    """The ``requests`` row of a new request (``policy_digest`` is the caller's to add)."""
    return {
        "id": str(req.id),
        "idempotency_key": req.idempotency_key,
        "status": req.status.value,
        "rule": req.rule,
        "required_approvals": req.required_approvals,
        "required_denials": req.required_denials,
        "groups": canonical_json(list(req.groups)),
        "comment_on_deny": req.comment_on_deny,
        "on_timeout": req.on_timeout,
        "fingerprint": req.fingerprint,
        "action": canonical_json(req.action.model_dump(mode="json")),
        "requester": canonical_json(req.requester.model_dump(mode="json")),
        "orchestrator": req.requester.orchestrator,
        "job": req.requester.job,
        "created_at": req.created_at,
        "expires_at": req.expires_at,
        "lineage_run_id": str(req.lineage_run_id),
        "classifications": canonical_json(
            {k: [c.model_dump(mode="json") for c in v] for k, v in req.classifications.items()}
        ),
        "version": 1,
    }


def dataset_rows(req: ApprovalRequest) -> list[dict[str, Any]]:
    """The ``request_datasets`` rows of a request: one per input and output."""
    return [
        {"request_id": str(req.id), "role": role, "namespace": a.namespace, "name": a.name}
        for role, assets in (("input", req.action.inputs), ("output", req.action.outputs))
        for a in assets
    ]


def decision_row(request_id: uuid.UUID, d: Decision) -> dict[str, Any]:
    """The ``decisions`` row of one reviewer's decision."""
    return {
        "request_id": str(request_id),
        "reviewer": d.reviewer,
        "verdict": d.verdict.value,
        "comment": d.comment,
        "channel": d.channel.value,
        "fingerprint": d.fingerprint,
        "decided_at": d.decided_at,
    }


def request_with_decisions(rows: Sequence[Row[Any]]) -> ApprovalRequest:
    """A request from rows of a request joined with its decisions: its columns, then one
    decision each (none when ``d_reviewer`` is null: the outer join found no decision)."""
    return request_of(rows[0], [decision_of(r) for r in rows if r.d_reviewer is not None])


def decision_of(row: Row[Any]) -> Decision:
    """A stored decision (trusted, see the module) from ``d_``-labelled columns."""
    return Decision.model_construct(
        reviewer=row.d_reviewer,
        verdict=Verdict(row.d_verdict),
        comment=row.d_comment,
        channel=Channel(row.d_channel),
        fingerprint=row.d_fingerprint,
        decided_at=row.d_decided_at,
    )


def request_of(row: Row[Any], decided: list[Decision]) -> ApprovalRequest:
    """A request from its stored row and decisions (trusted, see the module)."""
    return ApprovalRequest.model_construct(
        id=uuid.UUID(row.id),
        idempotency_key=row.idempotency_key,
        action=_stored_action(row.action),
        requester=_stored_requester(row.requester),
        rule=row.rule,
        required_approvals=row.required_approvals,
        required_denials=row.required_denials,
        groups=tuple(json.loads(row.groups)),
        comment_on_deny=bool(row.comment_on_deny),
        on_timeout=row.on_timeout,
        status=Status(row.status),
        created_at=row.created_at,
        expires_at=row.expires_at,
        fingerprint=row.fingerprint,
        lineage_run_id=uuid.UUID(row.lineage_run_id),
        decisions=tuple(decided),
        classifications=_stored_classifications(row.classifications),
    )


def _stored_requester(text: str) -> Requester:
    d = json.loads(text)
    parent = d.pop("parent", None)
    return Requester.model_construct(
        **d,
        parent=None
        if parent is None
        else ParentRun.model_construct(
            namespace=parent["namespace"], name=parent["name"], run_id=uuid.UUID(parent["run_id"])
        ),
    )


def _stored_classifications(text: str | None) -> dict[str, tuple[ClassificationSource, ...]]:
    if not text or text == "{}":
        return {}
    return {
        key: tuple(
            ClassificationSource.model_construct(
                classification=c["classification"],
                source=c["source"],
                path=tuple(LineageHop.model_construct(**hop) for hop in c.get("path", ())),
            )
            for c in sources
        )
        for key, sources in json.loads(text).items()
    }


def _stored_action(text: str) -> Action:
    """An :class:`Action` from its stored canonical JSON (trusted, see the module)."""
    d = json.loads(text)

    def assets(items: list[dict[str, Any]]) -> tuple[Asset, ...]:
        return tuple(
            Asset.model_construct(
                namespace=a["namespace"],
                name=a["name"],
                classifications=tuple(a.get("classifications", ())),
            )
            for a in items
        )

    return Action.model_construct(
        kind=d["kind"],
        summary=d.get("summary", ""),
        inputs=assets(d.get("inputs", [])),
        outputs=assets(d.get("outputs", [])),
        destination=d.get("destination"),
        environment=d.get("environment"),
        context=d.get("context", {}),
    )
