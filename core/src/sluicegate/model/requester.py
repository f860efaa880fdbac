"""Who asks: the pipeline step, the people behind it, the API principal, and the orchestrator
run the gate belongs to."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from pydantic import Field, ValidationError

from sluicegate.exceptions import ActionError
from sluicegate.identity import identities_in
from sluicegate.model.base import Frozen, validation_message

__all__ = ["ParentRun", "Requester", "parse_requester"]


class ParentRun(Frozen):
    """The orchestrator's run a gate belongs to: the gate's OpenLineage ``parent`` facet.

    The adapters fill it with the identity their orchestrator's own OpenLineage integration
    gives the step (Airflow's task run, dagster-openlineage's asset or Dagster run,
    openlineage-prefect's task or flow run), so that Marquez shows the gate as a child of it.
    """

    namespace: Annotated[str, Field(min_length=1, max_length=512)]
    name: Annotated[str, Field(min_length=1, max_length=512)]
    run_id: uuid.UUID


class Requester(Frozen):
    """Who asks: the pipeline step, the people behind it, and the API principal."""

    orchestrator: Annotated[str, Field(min_length=1, max_length=64)] = "api"
    job: Annotated[str, Field(max_length=512)] = ""
    run_id: Annotated[str, Field(max_length=512)] = ""
    step: Annotated[str, Field(max_length=512)] = ""
    try_number: Annotated[int, Field(ge=0)] = 0
    map_index: int = -1
    owner: Annotated[str | None, Field(max_length=512)] = None
    triggered_by: Annotated[str | None, Field(max_length=512)] = None
    principal: Annotated[str | None, Field(max_length=256)] = None
    #: The orchestrator run this gate is part of, for lineage (None: the gate has no parent).
    parent: ParentRun | None = None

    def identities(self) -> frozenset[str]:
        """Every identity that may never approve this request, normalized.

        That is the API principal that asked, the user or agent that triggered the run, and
        the job owner(s), each field read as :func:`sluicegate.identity.identities_in` reads
        free text (lists such as Airflow's ``owner="carol, dave"``, mentions, addresses).
        """
        names: set[str] = set()
        for value in (self.principal, self.triggered_by, self.owner):
            if value:
                names |= identities_in(value)
        return frozenset(names)


def parse_requester(data: Any, *, source: str = "requester") -> Requester:
    """Validate ``data`` as a :class:`Requester`, raising :class:`ActionError` in one line."""
    if not isinstance(data, dict):
        raise ActionError(f"{source}: expected a JSON object, got {_json_type(data)}")
    try:
        return Requester.model_validate(data)
    except ValidationError as err:
        raise ActionError(validation_message(err, source)) from err


def _json_type(value: Any) -> str:
    """What a JSON value is, in words (for "expected an object, got ...")."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return f"the number {value!r}"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    return type(value).__name__
