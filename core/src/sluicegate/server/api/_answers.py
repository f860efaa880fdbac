"""The JSON answers of the requests API, built from the model."""

from __future__ import annotations

from fastapi import Response
from pydantic import BaseModel

from sluicegate.model import ApprovalRequest, Requester
from sluicegate.server.wiring import ServerState
from sluicegate.wire import DecisionOut, RequestOut
from sluicegate.workflow import GateAnswer

__all__ = ["classifications_of", "gate_out", "json_answer", "request_out"]

_JSON = "application/json"


def json_answer(model: BaseModel, status_code: int = 200) -> Response:
    """``model`` as the response, serialised once by pydantic.

    Routes are async and return a ready Response: FastAPI then neither re-validates the
    answer against its ``response_model`` (which stays for the OpenAPI document) nor runs the
    route in a worker thread. Store work goes to the writer (writes) or ``Writer.read``.
    """
    return Response(model.model_dump_json(), status_code=status_code, media_type=_JSON)


def request_out(st: ServerState, req: ApprovalRequest) -> RequestOut:
    """The JSON form of a stored request (built unvalidated: every value comes from the
    model, and this runs on every status read)."""
    return RequestOut.model_construct(
        id=str(req.id),
        status=req.status.value,
        rule=req.rule,
        required_approvals=req.required_approvals,
        approvals=req.approvals,
        denials=req.denials,
        expires_at=req.expires_at,
        review_url=st.review_url(str(req.id)),
        created_at=req.created_at,
        idempotency_key=req.idempotency_key,
        fingerprint=req.fingerprint,
        comment_on_deny=req.comment_on_deny,
        on_timeout=req.on_timeout,
        groups=list(req.groups),
        action=req.action,
        classifications=classifications_of(st, req),
        classification_sources={key: list(found) for key, found in req.classifications.items()},
        requester=req.requester,
        decisions=[
            DecisionOut.model_construct(
                reviewer=d.reviewer,
                verdict=d.verdict,
                comment=d.comment,
                channel=d.channel,
                decided_at=d.decided_at,
            )
            for d in req.decisions
        ],
        lineage_run_id=str(req.lineage_run_id),
        reason="",
    )


def classifications_of(st: ServerState, req: ApprovalRequest) -> dict[str, list[str]]:
    """Each dataset's effective classifications as the gate found them when it opened (the
    policy's own view for requests stored before the server kept them)."""
    if req.classifications:
        return {k: sorted(c.classification for c in v) for k, v in req.classifications.items()}
    return {str(a): sorted(st.policy.classifications_of(a)) for a in req.action.assets}


def gate_out(
    st: ServerState, answer: GateAnswer, answer_id: str, requester: Requester
) -> RequestOut:
    """The answer to opening a gate: its request, or the policy's answer under ``answer_id``."""
    if answer.request is not None:
        return request_out(st, answer.request)
    ev = answer.evaluation
    # The requester as received, as a request's answer carries it: an adapter's lineage facet
    # of a policy answer names who asked from it (and never the default "api" requester).
    return RequestOut(
        id=answer_id,
        status=answer.status,
        rule=ev.rule,
        reason=ev.reason,
        requester=requester,
    )
