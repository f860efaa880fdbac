"""What a pipeline step is about to do: an :class:`Action` on :class:`Asset` datasets, its
untrusted context checked, and its fingerprint (a decision applies to this exact action)."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from typing import Annotated, Any

from pydantic import Field, ValidationError, WithJsonSchema, field_validator

from sluicegate.exceptions import ActionError
from sluicegate.model.base import Frozen, canonical_json, validation_message

__all__ = ["MAX_CONTEXT_BYTES", "MAX_CONTEXT_DEPTH", "Action", "Asset", "parse_action"]


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


class Asset(Frozen):
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


class Action(Frozen):
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


def parse_action(data: Any, *, source: str = "action") -> Action:
    """Validate ``data`` as an :class:`Action`, raising :class:`ActionError` in one line."""
    try:
        return Action.model_validate(data)
    except ValidationError as err:
        raise ActionError(validation_message(err, source)) from err
