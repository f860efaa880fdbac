"""The policy file's schema: what a policy YAML may hold, as frozen pydantic models.

These models check shapes and single fields (names, globs, durations, notify targets).
Checks that span fields (unique names, groups that have members, quorums that can be met,
reviewer identities that could pass for one another) run after them, in
:mod:`sluicegate.policy.loading`, where each error can be given its line in the file.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from sluicegate.timefmt import parse_duration

__all__ = [
    "ClassifySpec",
    "DeclassifySpec",
    "MatchSpec",
    "Outcome",
    "PolicySpec",
    "RequesterMatchSpec",
    "RequireSpec",
    "ReviewerSpec",
    "RuleSpec",
]

#: What a rule (or the default) says about an action.
Outcome = Literal["allow", "deny", "require"]

_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.@:+-]{0,127}$"
_NOTIFY_SCHEMES = ("slack", "teams", "webhook")


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


def _as_list(value: Any) -> Any:
    # A single value where a list is expected is a common hand-written slip; accept it.
    return [value] if isinstance(value, str) else value


_Globs = Annotated[list[Annotated[str, Field(min_length=1)]], Field(min_length=1)]


class ReviewerSpec(_Spec):
    """A person (or service identity) that may decide."""

    id: Annotated[str, Field(pattern=_NAME)]
    name: str = ""
    email: str | None = None
    slack_id: str | None = None
    groups: list[Annotated[str, Field(pattern=_NAME)]] = Field(default_factory=list)

    _lists = field_validator("groups", mode="before")(_as_list)


class ClassifySpec(_Spec):
    """Give every dataset whose name matches one of ``datasets`` the classifications ``add``."""

    datasets: _Globs
    add: Annotated[
        list[Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_.:-]{0,63}$")]], Field(min_length=1)
    ]

    _lists = field_validator("datasets", "add", mode="before")(_as_list)


class DeclassifySpec(_Spec):
    """The outputs of the named jobs do not inherit ``remove`` through lineage (a masking job).

    ``jobs`` are globs on the OpenLineage job name (``namespace::glob`` pins the namespace);
    ``remove`` names classifications, or ``"*"`` for all of them. A dataset's own
    classifications (its tags, the ``classify`` rules) are never removed.
    """

    jobs: _Globs
    remove: Annotated[
        list[Annotated[str, Field(pattern=r"^(\*|[a-z0-9][a-z0-9_.:-]{0,63})$")]],
        Field(min_length=1),
    ]

    _lists = field_validator("jobs", "remove", mode="before")(_as_list)


class RequesterMatchSpec(_Spec):
    """Globs on requester fields; a field given must match."""

    orchestrator: _Globs | None = None
    job: _Globs | None = None
    owner: _Globs | None = None
    triggered_by: _Globs | None = None
    principal: _Globs | None = None

    _lists = field_validator("*", mode="before")(_as_list)


class MatchSpec(_Spec):
    """Every key given must match; within a key's list, any one item suffices."""

    actions: _Globs | None = None
    datasets: _Globs | None = None
    namespaces: _Globs | None = None
    classifications: _Globs | None = None
    environments: _Globs | None = None
    destinations: _Globs | None = None
    requester: RequesterMatchSpec | None = None

    _lists = field_validator(
        "actions",
        "datasets",
        "namespaces",
        "classifications",
        "environments",
        "destinations",
        mode="before",
    )(_as_list)


class RequireSpec(_Spec):
    """What a ``require`` outcome needs before the action may run."""

    approvals: Annotated[int, Field(ge=1, le=50)] = 1
    groups: Annotated[list[Annotated[str, Field(pattern=_NAME)]], Field(min_length=1)]
    comment_on_deny: bool = False
    timeout: str | int = "24h"
    on_timeout: Literal["deny", "allow"] = "deny"
    denials: Annotated[int, Field(ge=1, le=50)] = 1
    #: Remind the same targets when a request still waits after this long (once).
    remind_after: str | int | None = None
    #: Tell the reviewers of ``escalate_to`` when a request still waits after this long (once).
    escalate_after: str | int | None = None
    escalate_to: list[Annotated[str, Field(pattern=_NAME)]] = Field(default_factory=list)

    _lists = field_validator("groups", "escalate_to", mode="before")(_as_list)

    @field_validator("timeout", "remind_after", "escalate_after")
    @classmethod
    def _duration(cls, value: str | int | None) -> str | int | None:
        if value is not None:
            parse_duration(value)
        return value

    @model_validator(mode="after")
    def _escalation(self) -> RequireSpec:
        if self.escalate_after is not None and not self.escalate_to:
            raise ValueError("escalate_after needs escalate_to: the groups to tell")
        return self


class RuleSpec(_Spec):
    """One policy rule."""

    name: Annotated[str, Field(pattern=_NAME)]
    description: str = ""
    match: MatchSpec = Field(default_factory=MatchSpec)
    outcome: Outcome
    require: RequireSpec | None = None
    notify: list[str] = Field(default_factory=list)
    reason: str = ""

    _lists = field_validator("notify", mode="before")(_as_list)

    @field_validator("notify")
    @classmethod
    def _targets(cls, value: list[str]) -> list[str]:
        for target in value:
            scheme, _, rest = target.partition(":")
            if scheme not in _NOTIFY_SCHEMES:
                raise ValueError(
                    f"notify target {target!r} must start with one of "
                    + ", ".join(f"{s}:" for s in _NOTIFY_SCHEMES)
                )
            if scheme == "slack" and not rest.strip():
                raise ValueError(f"notify target {target!r} names no Slack channel")
        return value


class PolicySpec(_Spec):
    """The whole file."""

    version: Literal[1]
    default: Outcome = "allow"
    default_require: RequireSpec | None = None
    default_notify: list[str] = Field(default_factory=list)
    reviewers: list[ReviewerSpec] = Field(default_factory=list)
    classify: list[ClassifySpec] = Field(default_factory=list)
    declassify: list[DeclassifySpec] = Field(default_factory=list)
    rules: list[RuleSpec] = Field(default_factory=list)
