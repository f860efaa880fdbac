"""The domain model: what a pipeline asks, who asks, who decides, and how a request ends.

These are plain, immutable values (pydantic models) with no I/O. The store persists them, the
server speaks them as JSON, and the adapters build ``Action`` and ``Requester`` from their
orchestrator's idea of a step.

The status machine::

    pending ──> approved | denied | expired | cancelled     (terminal states never change)
"""

from __future__ import annotations

import enum
import hashlib
import json
import os
import re
import time
import uuid
from collections.abc import Iterable
from datetime import datetime, timedelta, timezone
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from sluicegate.exceptions import ActionError, TransitionError
from sluicegate.identity import identities_in

__all__ = [
    "MAX_CONTEXT_BYTES",
    "MAX_CONTEXT_DEPTH",
    "TERMINAL",
    "Action",
    "ApprovalRequest",
    "Asset",
    "Channel",
    "ClassificationSource",
    "Decision",
    "LineageHop",
    "ParentRun",
    "Requester",
    "Status",
    "Verdict",
    "canonical_json",
    "check_transition",
    "no_nul",
    "parse_action",
    "parse_requester",
    "utcnow",
    "uuid7",
    "validation_message",
]

#: Context is untrusted text shown to reviewers; past this size it is refused, not truncated,
#: so that a reviewer never approves an action whose context they could not see in full.
MAX_CONTEXT_BYTES = 64 * 1024

#: How deep objects and arrays may nest in context (the context object itself is level 1).
#: Deeper values are refused as bad input: past 255 levels pydantic cannot serialize them, so
#: the gate would fail in the store instead, and no reviewer reads 32 levels of nesting.
MAX_CONTEXT_DEPTH = 32

_CLASSIFICATION = re.compile(r"^[a-z0-9][a-z0-9_.:-]{0,63}$")
_KIND = re.compile(r"^[a-z0-9][a-z0-9_.:-]{0,63}$")

# What Asset.classifications takes, for the OpenAPI document: one label or a list, each
# trimmed and lower-cased before it is checked.
_LABEL_SCHEMA = {"type": "string", "pattern": r"^\s*[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}\s*$"}
_CLASSIFICATIONS_SCHEMA: dict[str, Any] = {
    "anyOf": [_LABEL_SCHEMA, {"type": "array", "items": _LABEL_SCHEMA}],
    "description": "a classification or a list of them (case-insensitive)",
}


def utcnow() -> datetime:
    """The current time, timezone-aware, in UTC."""
    return datetime.now(timezone.utc)


_last_v7 = 0


def uuid7() -> uuid.UUID:
    """A UUIDv7 (RFC 9562): time-ordered, so ids sort by creation like the audit log does.

    Python's ``uuid`` module only has ``uuid7`` from 3.14 on; this one is monotonic within a
    process (a clash on the same millisecond moves the counter bits forward).
    """
    global _last_v7
    ms = time.time_ns() // 1_000_000
    rand = int.from_bytes(os.urandom(10), "big")
    rand_a, rand_b = (rand >> 62) & 0xFFF, rand & ((1 << 62) - 1)
    value = (ms << 80) | (0x7 << 76) | (rand_a << 64) | (0x2 << 62) | rand_b
    if value <= _last_v7:
        value = _last_v7 + 1
    _last_v7 = value
    return uuid.UUID(int=value)


def canonical_json(value: Any) -> str:
    """JSON with sorted keys and no insignificant whitespace: the same value, the same text."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def no_nul(value: Any) -> Any:
    """Refuse text holding NUL: PostgreSQL cannot store it and SQLite can, so both refuse it
    up front, as bad input (a 4xx), rather than fail on one database only."""
    if isinstance(value, str) and "\x00" in value:
        raise ValueError("must not contain NUL characters")
    return value


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=True)

    _no_nul = field_validator("*", mode="after")(classmethod(lambda cls, v: no_nul(v)))


class Status(str, enum.Enum):
    """Where a request is in its life. Only ``pending`` can change."""

    PENDING = "pending"
    APPROVED = "approved"
    DENIED = "denied"
    EXPIRED = "expired"
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        """True for a state that never changes again."""
        return self is not Status.PENDING


TERMINAL = frozenset(s for s in Status if s.terminal)

_TRANSITIONS: dict[Status, frozenset[Status]] = {
    Status.PENDING: frozenset(TERMINAL),
    **{s: frozenset() for s in TERMINAL},
}


def check_transition(current: Status, new: Status) -> None:
    """Raise :class:`TransitionError` unless ``current -> new`` is a legal move."""
    if new not in _TRANSITIONS[current]:
        if current.terminal:
            raise TransitionError(
                f"request is already {current.value}; a terminal state cannot become {new.value}"
            )
        raise TransitionError(f"illegal transition {current.value} -> {new.value}")


class Verdict(str, enum.Enum):
    """What a reviewer says."""

    APPROVE = "approve"
    DENY = "deny"


class Channel(str, enum.Enum):
    """Where a decision came from (recorded in the audit log)."""

    WEB = "web"
    SLACK = "slack"
    TEAMS_LINK = "teams-link"
    LINK = "link"
    CLI = "cli"
    API = "api"


class Asset(_Frozen):
    """An OpenLineage dataset identity plus the classifications the pipeline gives it."""

    namespace: Annotated[str, Field(min_length=1, max_length=1024)]
    name: Annotated[str, Field(min_length=1, max_length=1024)]
    classifications: Annotated[tuple[str, ...], WithJsonSchema(_CLASSIFICATIONS_SCHEMA)] = ()

    @field_validator("classifications", mode="before")
    @classmethod
    def _normalise_classifications(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, (list, tuple, set, frozenset)):
            return value  # let pydantic name the type error
        out = set()
        for item in value:
            if not isinstance(item, str):
                raise ValueError(f"classification {item!r} is not a string")
            label = item.strip().lower()
            if not _CLASSIFICATION.match(label):
                raise ValueError(
                    f"classification {item!r} must be 1-64 characters of a-z, 0-9, _ . : -"
                )
            out.add(label)
        return tuple(sorted(out))

    @property
    def key(self) -> tuple[str, str]:
        """``(namespace, name)``: the identity, without classifications."""
        return (self.namespace, self.name)

    def __str__(self) -> str:
        return f"{self.namespace}::{self.name}"


def _check_json_value(value: Any, path: str, depth: int = 1) -> None:
    # Context must survive a JSON round trip unchanged, or its fingerprint would drift; and it
    # must be storable, on both databases, or the gate fails in the store (a 5xx) instead of
    # here (a 422).
    if value is None or isinstance(value, (bool, int)):
        return
    if isinstance(value, str):
        _check_text(value, path)
        return
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise ValueError(f"context{path} is not a finite number")
        return
    if isinstance(value, (list, dict)) and depth > MAX_CONTEXT_DEPTH:
        # The path is left out: 32 keys of any length would make the message unbounded.
        raise ValueError(
            f"context nests objects and arrays more than {MAX_CONTEXT_DEPTH} levels deep; "
            f"the limit is {MAX_CONTEXT_DEPTH}"
        )
    if isinstance(value, list):
        for i, item in enumerate(value):
            _check_json_value(item, f"{path}[{i}]", depth + 1)
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise ValueError(f"context{path} has a non-string key {key!r}")
            _check_text(key, f"{path} (a key)")
            _check_json_value(item, f"{path}.{key}", depth + 1)
        return
    raise ValueError(f"context{path} holds a {type(value).__name__}, not a JSON value")


def _check_text(value: str, path: str) -> None:
    # A lone surrogate ("\ud800" in JSON) is no Unicode text: neither database can store it.
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(f"context{path} holds a lone surrogate, which is not text") from None


class Action(_Frozen):
    """What a pipeline step is about to do.

    ``context`` is untrusted (it may carry query text written by whoever wrote the pipeline):
    it is escaped wherever it is shown, capped at :data:`MAX_CONTEXT_BYTES`, and nested at
    most :data:`MAX_CONTEXT_DEPTH` levels deep.
    """

    kind: Annotated[str, Field(min_length=1, max_length=64)]
    summary: Annotated[str, Field(max_length=2000)] = ""
    inputs: tuple[Asset, ...] = ()
    outputs: tuple[Asset, ...] = ()
    destination: Annotated[str | None, Field(max_length=2048)] = None
    environment: Annotated[str | None, Field(max_length=64)] = None
    context: dict[str, Any] = Field(default_factory=dict)

    @field_validator("kind", mode="before")
    @classmethod
    def _normalise_kind(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = value.strip().lower()
            if not _KIND.match(value):
                raise ValueError(f"kind {value!r} must be 1-64 characters of a-z, 0-9, _ . : -")
        return value

    @field_validator("environment", mode="before")
    @classmethod
    def _normalise_environment(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("context")
    @classmethod
    def _cap_context(cls, value: dict[str, Any]) -> dict[str, Any]:
        _check_json_value(value, "")
        size = len(canonical_json(value).encode())
        if size > MAX_CONTEXT_BYTES:
            raise ValueError(f"context is {size} bytes; the limit is {MAX_CONTEXT_BYTES}")
        return value

    @property
    def assets(self) -> tuple[Asset, ...]:
        """Inputs then outputs."""
        return self.inputs + self.outputs

    def canonical(self) -> dict[str, Any]:
        """The action as plain JSON values, in an order-independent form.

        Datasets are sorted, because a pipeline listing the same inlets in another order is
        asking for the same thing; context is kept as given (its keys are sorted when dumped).
        """

        def assets(items: Iterable[Asset]) -> list[dict[str, Any]]:
            rows = [
                {
                    "namespace": a.namespace,
                    "name": a.name,
                    "classifications": list(a.classifications),
                }
                for a in items
            ]
            return sorted(rows, key=lambda r: (r["namespace"], r["name"]))

        return {
            "kind": self.kind,
            "summary": self.summary,
            "inputs": assets(self.inputs),
            "outputs": assets(self.outputs),
            "destination": self.destination,
            "environment": self.environment,
            "context": self.context,
        }

    def fingerprint(self) -> str:
        """A stable hash of the canonical action: a decision applies only to this exact action."""
        digest = hashlib.sha256(canonical_json(self.canonical()).encode()).hexdigest()
        return f"sha256:{digest}"


class ParentRun(_Frozen):
    """The orchestrator's run a gate belongs to: the gate's OpenLineage ``parent`` facet.

    The adapters fill it with the identity their orchestrator's own OpenLineage integration
    gives the step (Airflow's task run, dagster-openlineage's asset or Dagster run,
    openlineage-prefect's task or flow run), so that Marquez shows the gate as a child of it.
    """

    namespace: Annotated[str, Field(min_length=1, max_length=512)]
    name: Annotated[str, Field(min_length=1, max_length=512)]
    run_id: uuid.UUID


class Requester(_Frozen):
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


class Decision(_Frozen):
    """One reviewer's verdict on one request. A reviewer counts once per request."""

    reviewer: Annotated[str, Field(min_length=1, max_length=256)]
    verdict: Verdict
    comment: Annotated[str, Field(max_length=4000)] = ""
    channel: Channel = Channel.API
    fingerprint: str
    decided_at: datetime = Field(default_factory=utcnow)


class LineageHop(_Frozen):
    """One step on the way a classification took: data moved from this dataset through ``job``."""

    namespace: str
    name: str
    job: str  # "namespace::name" of the OpenLineage job


class ClassificationSource(_Frozen):
    """Why a dataset of a request carries a classification: the first source found.

    ``source`` says where it started (the pipeline, a ``classify`` rule, an OpenLineage tags
    facet); ``path`` leads from the dataset that carries it on its own to this one, through
    lineage (empty when the dataset carries it itself).
    """

    classification: str
    source: str
    path: tuple[LineageHop, ...] = ()


class ApprovalRequest(_Frozen):
    """A gate that an action is waiting at."""

    id: uuid.UUID = Field(default_factory=uuid7)
    idempotency_key: Annotated[str, Field(min_length=1, max_length=512)]
    action: Action
    requester: Requester
    rule: str | None = None
    required_approvals: Annotated[int, Field(ge=0)] = 1
    required_denials: Annotated[int, Field(ge=1)] = 1
    groups: tuple[str, ...] = ()
    comment_on_deny: bool = False
    on_timeout: Literal["deny", "allow"] = "deny"
    status: Status = Status.PENDING
    created_at: datetime = Field(default_factory=utcnow)
    expires_at: datetime | None = None
    fingerprint: str = ""
    lineage_run_id: uuid.UUID = Field(default_factory=uuid7)
    decisions: tuple[Decision, ...] = ()
    #: "namespace::name" of each dataset of the action -> its effective classifications and
    #: where each came from, as the server found them when the gate opened (lineage included).
    classifications: dict[str, tuple[ClassificationSource, ...]] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _fill_fingerprint(self) -> ApprovalRequest:
        expected = self.action.fingerprint()
        if not self.fingerprint:
            object.__setattr__(self, "fingerprint", expected)
        elif self.fingerprint != expected:
            raise ValueError("fingerprint does not match the action")
        return self

    @classmethod
    def open(
        cls,
        *,
        idempotency_key: str,
        action: Action,
        requester: Requester,
        rule: str | None,
        required_approvals: int,
        timeout: timedelta | None,
        required_denials: int = 1,
        groups: tuple[str, ...] = (),
        comment_on_deny: bool = False,
        on_timeout: Literal["deny", "allow"] = "deny",
        now: datetime | None = None,
        classifications: dict[str, tuple[ClassificationSource, ...]] | None = None,
    ) -> ApprovalRequest:
        """A new pending request; ``timeout`` sets ``expires_at``."""
        created = now or utcnow()
        return cls(
            idempotency_key=idempotency_key,
            action=action,
            requester=requester,
            rule=rule,
            required_approvals=required_approvals,
            required_denials=required_denials,
            groups=groups,
            comment_on_deny=comment_on_deny,
            on_timeout=on_timeout,
            created_at=created,
            expires_at=created + timeout if timeout is not None else None,
            classifications=classifications or {},
        )

    def transition(self, new: Status) -> ApprovalRequest:
        """This request in state ``new``; raises :class:`TransitionError` if not allowed."""
        check_transition(self.status, new)
        return self.model_copy(update={"status": new})

    @property
    def approvals(self) -> int:
        """Distinct reviewers who approved."""
        return len({d.reviewer for d in self.decisions if d.verdict is Verdict.APPROVE})

    @property
    def denials(self) -> int:
        """Distinct reviewers who denied."""
        return len({d.reviewer for d in self.decisions if d.verdict is Verdict.DENY})

    def is_expired(self, now: datetime | None = None) -> bool:
        """True when pending past ``expires_at``."""
        if self.status is not Status.PENDING or self.expires_at is None:
            return False
        return (now or utcnow()) >= self.expires_at


def validation_message(err: ValidationError, source: str) -> str:
    """pydantic's first error in one line, ``SOURCE: FIELD: problem`` (never its help URL)."""
    first = err.errors()[0]
    loc = ".".join(str(p) for p in first["loc"]) or "(root)"
    msg = str(first["msg"]).removeprefix("Value error, ")
    more = f" (and {err.error_count() - 1} more)" if err.error_count() > 1 else ""
    return f"{source}: {loc}: {msg}{more}"


def parse_action(data: Any, *, source: str = "action") -> Action:
    """Validate ``data`` as an :class:`Action`, raising :class:`ActionError` in one line."""
    try:
        return Action.model_validate(data)
    except ValidationError as err:
        raise ActionError(validation_message(err, source)) from err


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
