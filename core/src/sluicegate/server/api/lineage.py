"""HTTP API v1, lineage: the OpenLineage receiver and the dataset graph's read side.

``POST /api/v1/lineage`` follows Marquez's ingest contract, so that any OpenLineage client
pointed at Sluicegate (``OPENLINEAGE_URL=http://sluicegate:8080``, or one leg of a composite
transport beside Marquez) works unchanged: it takes what Marquez takes (gzipped bodies
included) and answers as Marquez does: 201 with no body when stored, 400 for a body or value
Marquez cannot read (a run id that is not a UUID included), 422 for a required field that is
missing; and, beyond Marquez, 413 for a body that inflates past the server's limit and 415
for a content coding other than gzip. Every body it reads and refuses is counted by reason
in ``sluicegate_lineage_events_refused_total``. The caller needs a token of any scope
(OpenLineage clients send ``OPENLINEAGE_API_KEY`` as a bearer token): lineage can only add
classifications, never remove them, but it is the server's input all the same.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel

from sluicegate.lineage.graph import Subgraph
from sluicegate.lineage.ingest import LineageRejected, parse_event
from sluicegate.model import ClassificationSource
from sluicegate.server.api._lineage_body import read_body
from sluicegate.server.auth import Identity, require_any
from sluicegate.server.errors import ApiError
from sluicegate.server.middleware import MAX_BODY_BYTES
from sluicegate.server.wiring import ServerState, state_dependency

__all__ = ["router"]

router = APIRouter(prefix="/api/v1", tags=["lineage"])
State = Annotated[ServerState, Depends(state_dependency)]
_NO_NUL = r"^[^\x00]*$"
Namespace = Annotated[str, Query(min_length=1, max_length=1024, pattern=_NO_NUL)]
Name = Annotated[str, Query(min_length=1, max_length=1024, pattern=_NO_NUL)]
Depth = Annotated[int, Query(ge=1, le=20)]


@router.post(
    "/lineage",
    status_code=201,
    response_class=Response,
    responses={
        201: {"description": "stored (no body)"},
        400: {
            "description": "the body or a value in it cannot be read (not JSON, not gzip, "
            "nested too deep, a field of the wrong type or form, a run id that is not a UUID)"
        },
        413: {"description": "the body is, or inflates to, more than the server's limit"},
        415: {"description": "a Content-Encoding other than gzip"},
        422: {"description": "a required field is missing; the detail names it"},
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {"type": "object"}}},
        }
    },
)
async def receive_lineage(
    request: Request, st: State, _: Annotated[Identity, Depends(require_any)]
) -> Response:
    """Receive one OpenLineage event (RunEvent, JobEvent or DatasetEvent), gzipped or not."""
    raw = await request.body()
    try:
        body = read_body(raw, request.headers.get("content-encoding"), limit=MAX_BODY_BYTES)
        record = parse_event(body, strict=st.settings.lineage.strict)
    except LineageRejected as err:
        st.metrics.lineage_received.labels("rejected").inc()
        st.metrics.lineage_refused.labels(err.reason).inc()
        raise ApiError(err.status, err.code, str(err)) from None
    await st.writer.run(st.lineage.tables.record, [record])
    await st.writer.read(st.lineage.refresh, 0.0)
    st.metrics.lineage_received.labels("stored").inc()
    return Response(status_code=201)


class DatasetRef(BaseModel):
    namespace: str
    name: str


class NodeOut(DatasetRef):
    distance: int


class EdgeOut(BaseModel):
    source: DatasetRef
    job: DatasetRef
    target: DatasetRef


class SubgraphOut(BaseModel):
    """Datasets within ``depth`` hops and the edges among them (job: which job moved data)."""

    dataset: DatasetRef
    direction: str
    depth: int
    nodes: list[NodeOut]
    edges: list[EdgeOut]
    truncated: bool


class ClassificationsOut(BaseModel):
    dataset: DatasetRef
    #: The one class of the concept, as the requests' ``classification_sources`` answer it too.
    classifications: list[ClassificationSource]


def _subgraph_out(g: Subgraph) -> SubgraphOut:
    return SubgraphOut(
        dataset=DatasetRef(namespace=g.root[0], name=g.root[1]),
        direction=g.direction,
        depth=g.depth,
        nodes=[NodeOut(namespace=n, name=m, distance=d) for (n, m), d in g.nodes],
        edges=[
            EdgeOut(
                source=DatasetRef(namespace=s[0], name=s[1]),
                job=DatasetRef(namespace=j[0], name=j[1]),
                target=DatasetRef(namespace=t[0], name=t[1]),
            )
            for s, j, t in g.edges
        ],
        truncated=g.truncated,
    )


async def _fresh(st: ServerState) -> None:
    if st.lineage.stale:
        await st.writer.read(st.lineage.refresh)


@router.get("/lineage/classifications", response_model=ClassificationsOut)
async def classifications(
    st: State, _: Annotated[Identity, Depends(require_any)], namespace: Namespace, name: Name
) -> Any:
    """A dataset's effective classifications (policy, tags, lineage) and where each came from."""
    await _fresh(st)
    found = st.lineage.sources_of(namespace, name)
    return ClassificationsOut(
        dataset=DatasetRef(namespace=namespace, name=name),
        classifications=list(found),
    )


@router.get("/lineage/{direction}", response_model=SubgraphOut)
async def walk(
    st: State,
    _: Annotated[Identity, Depends(require_any)],
    direction: Literal["upstream", "downstream"],
    namespace: Namespace,
    name: Name,
    depth: Depth = 5,
) -> Any:
    """Where a dataset's data came from (``upstream``) or went (``downstream``), to ``depth``
    jobs away."""
    await _fresh(st)
    graph = st.lineage.upstream if direction == "upstream" else st.lineage.downstream
    return _subgraph_out(graph((namespace, name), depth))
