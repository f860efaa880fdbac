"""The policy engine: which actions run freely, which are refused, and which wait for whom.

A policy file (YAML, see the README) lists reviewers, classification rules and ordered rules.
Loading validates it completely (pydantic for shapes, then cross-references such as groups
that nobody belongs to), and every error names the file, the line and the field. A loaded
:class:`Policy` is compiled once: globs become regular expressions and rules are indexed by
action kind, so evaluating an action against a thousand rules stays well under a millisecond.

Evaluation is first match wins; no match gives the policy's ``default``. For ``require``, the
eligible reviewers are the members of the rule's groups minus everyone the requester is: the
API principal that asked, the user that triggered the run and the job owner. Those three can
never approve, whatever the groups say, however their identity is spelled: identities are
compared by :mod:`sluicegate.identity`, and reviewer identities that could pass for one another
are refused when the policy loads.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from fnmatch import translate
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from sluicegate.exceptions import PolicyError
from sluicegate.identity import identity_keys, identity_problem, lookalikes, normalize, skeleton
from sluicegate.model import Action, Asset, Requester

__all__ = [
    "ClassifySpec",
    "DeclassifySpec",
    "Evaluation",
    "MatchSpec",
    "Policy",
    "PolicySpec",
    "RequesterMatchSpec",
    "RequireSpec",
    "Requirement",
    "Reviewer",
    "ReviewerSpec",
    "RuleSpec",
    "load_policy",
    "parse_duration",
]

Outcome = Literal["allow", "deny", "require"]

_DURATION = re.compile(r"^(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")
_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.@:+-]{0,127}$"
_NOTIFY_SCHEMES = ("slack", "teams", "webhook")


def parse_duration(value: str | int) -> timedelta:
    """``"24h"``, ``"1h30m"``, ``"2d"``, ``"90s"`` or a number of seconds, as a timedelta."""
    if isinstance(value, bool):
        raise ValueError(f"duration {value!r} is not a duration")
    if isinstance(value, int):
        seconds = value
    else:
        match = _DURATION.match(value.strip())
        if not value.strip() or match is None:
            raise ValueError(f"duration {value!r} is not like 30s, 15m, 24h, 2d or 1h30m")
        d, h, m, s = (int(g) if g else 0 for g in match.groups())
        seconds = ((d * 24 + h) * 60 + m) * 60 + s
    if seconds <= 0:
        raise ValueError(f"duration {value!r} must be positive")
    if seconds > 366 * 86400:
        raise ValueError(f"duration {value!r} is longer than a year")
    return timedelta(seconds=seconds)


# --------------------------------------------------------------------------- file schema


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


# --------------------------------------------------------------------------- loading


# libyaml's loader is ten times faster than the pure-Python one; both give the same nodes.
_Loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _parse_yaml(text: str, source: str) -> tuple[Any, dict[tuple[Any, ...], int]]:
    """The document's data, and each path in it (``("rules", 0, "require")``) to its line.

    The text is parsed once: the nodes give the lines, then become the data. Duplicate keys
    are refused, which plain YAML loading would silently resolve to the
    last one: in a security policy, a rule that quietly loses half its conditions is a hole.
    """
    loader = _Loader(text)
    try:
        root = loader.get_single_node()
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        line = mark.line + 1 if mark is not None else None
        problem = err.problem or err.context or "invalid YAML"
        raise PolicyError(f"invalid YAML: {problem}", path=source, line=line) from err
    except yaml.YAMLError as err:
        raise PolicyError(f"invalid YAML: {err}", path=source) from err
    lines: dict[tuple[Any, ...], int] = {}

    def walk(node: yaml.Node | None, path: tuple[Any, ...]) -> None:
        if node is None:
            return
        lines.setdefault(path, node.start_mark.line + 1)
        if isinstance(node, yaml.MappingNode):
            seen: set[str] = set()
            for key_node, value_node in node.value:
                key = key_node.value if isinstance(key_node, yaml.ScalarNode) else str(key_node)
                if key in seen:
                    where = _field_name((*path, key))
                    raise PolicyError(
                        "duplicate key", path=source, line=key_node.start_mark.line + 1, field=where
                    )
                seen.add(key)
                child = (*path, key)
                lines[child] = key_node.start_mark.line + 1
                walk(value_node, child)
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                walk(item, (*path, i))

    walk(root, ())
    try:
        data = loader.construct_document(root) if root is not None else None
    except yaml.YAMLError as err:
        raise PolicyError(f"invalid YAML: {err}", path=source) from err
    finally:
        loader.dispose()
    return data, lines


def _field_name(loc: Sequence[Any]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(document)"


def _line_for(lines: Mapping[tuple[Any, ...], int], loc: Sequence[Any]) -> int | None:
    path = tuple(loc)
    while path:
        if path in lines:
            return lines[path]
        path = path[:-1]
    return lines.get(())


def load_policy(path: str | Path) -> Policy:
    """Read, validate and compile the policy file at ``path``."""
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError as err:
        raise PolicyError("no such file", path=source) from err
    except (OSError, UnicodeDecodeError) as err:
        raise PolicyError(f"cannot read: {err}", path=source) from err
    return Policy.from_text(text, source=source)


# --------------------------------------------------------------------------- compiled form


@dataclass(frozen=True)
class Reviewer:
    """A reviewer as the rest of Sluicegate sees one."""

    id: str
    name: str = ""
    email: str | None = None
    slack_id: str | None = None
    groups: frozenset[str] = frozenset()
    #: The skeletons of the id, email (and its local part) and Slack id, for comparisons.
    keys: frozenset[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "keys", identity_keys(self.id, self.email, self.slack_id))

    def is_any_of(self, identities: Iterable[str | None]) -> bool:
        """True if one of the free-text ``identities`` is, or may pass for, this reviewer.

        Each is read as :func:`sluicegate.identity.identities_in` reads it (lists, Slack
        mentions, addresses, prefixes) and compared by confusable skeleton, by id, email or
        Slack id: when in doubt, it is this reviewer.
        """
        return lookalikes(identities).match(self.keys)


@dataclass(frozen=True)
class Requirement:
    """The compiled ``require`` block of a rule (or of the default)."""

    approvals: int
    groups: tuple[str, ...]
    comment_on_deny: bool
    timeout: timedelta
    on_timeout: Literal["deny", "allow"]
    denials: int
    remind_after: timedelta | None = None
    escalate_after: timedelta | None = None
    escalate_to: tuple[str, ...] = ()

    @classmethod
    def from_spec(cls, spec: RequireSpec) -> Requirement:
        return cls(
            approvals=spec.approvals,
            groups=tuple(spec.groups),
            comment_on_deny=spec.comment_on_deny,
            timeout=parse_duration(spec.timeout),
            on_timeout=spec.on_timeout,
            denials=spec.denials,
            remind_after=None if spec.remind_after is None else parse_duration(spec.remind_after),
            escalate_after=(
                None if spec.escalate_after is None else parse_duration(spec.escalate_after)
            ),
            escalate_to=tuple(spec.escalate_to),
        )


@dataclass(frozen=True)
class Evaluation:
    """What the policy says about one action, and why."""

    outcome: Outcome
    rule: str | None
    reasons: tuple[str, ...] = ()
    requirement: Requirement | None = None
    eligible: tuple[Reviewer, ...] = ()
    excluded: tuple[tuple[Reviewer, str], ...] = ()
    notify: tuple[str, ...] = ()
    reason: str = ""
    classifications: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    trace: tuple[str, ...] = ()

    @property
    def satisfiable(self) -> bool:
        """False when fewer reviewers are eligible than the quorum needs."""
        return self.requirement is None or len(self.eligible) >= self.requirement.approvals

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON values (for ``--format json`` and the API)."""
        req = self.requirement
        return {
            "outcome": self.outcome,
            "rule": self.rule,
            "reasons": list(self.reasons),
            "reason": self.reason,
            "required_approvals": req.approvals if req else 0,
            "groups": list(req.groups) if req else [],
            "timeout_seconds": int(req.timeout.total_seconds()) if req else None,
            "on_timeout": req.on_timeout if req else None,
            "comment_on_deny": req.comment_on_deny if req else False,
            "eligible_reviewers": [r.id for r in self.eligible],
            "excluded_reviewers": [{"id": r.id, "why": why} for r, why in self.excluded],
            "satisfiable": self.satisfiable,
            "notify": list(self.notify),
            "classifications": {k: list(v) for k, v in self.classifications.items()},
            "trace": list(self.trace),
        }


def _glob_regex(globs: Iterable[str]) -> re.Pattern[str]:
    return re.compile("|".join(f"(?:{translate(g)})" for g in globs))


@dataclass(frozen=True)
class _AssetGlob:
    """A dataset glob, optionally pinned to a namespace glob (``namespace::name``)."""

    text: str
    namespace: re.Pattern[str] | None
    name: re.Pattern[str]

    @classmethod
    def parse(cls, text: str) -> _AssetGlob:
        ns, sep, name = text.partition("::")
        if not sep:
            return cls(text, None, re.compile(translate(text)))
        return cls(text, re.compile(translate(ns)), re.compile(translate(name)))

    def matches(self, namespace: str, name: str) -> bool:
        if self.namespace is not None and self.namespace.match(namespace) is None:
            return False
        return self.name.match(name) is not None


@dataclass
class _Facts:
    """What one evaluation looks at, computed once per action."""

    kind: str
    assets: list[tuple[str, str, frozenset[str]]]
    classifications: frozenset[str]
    environment: str
    destination: str
    requester: Requester
    #: Only when explaining: (namespace, name) -> classification -> where it came from.
    sources: Mapping[tuple[str, str], Mapping[str, str]] = field(default_factory=dict)


# A condition answers True/False fast; ``explain`` answers the same with a sentence.
_Test = Callable[[_Facts], bool]
_Explain = Callable[[_Facts], tuple[bool, str]]


def _any_glob(
    label: str, globs: list[str], value: Callable[[_Facts], str]
) -> tuple[_Test, _Explain]:
    regex = _glob_regex(globs)

    def test(f: _Facts) -> bool:
        return regex.match(value(f)) is not None

    def explain(f: _Facts) -> tuple[bool, str]:
        v = value(f)
        ok = regex.match(v) is not None
        return ok, f"{label} {v!r} {'matches' if ok else 'does not match'} {globs}"

    return test, explain


def _dataset_condition(globs: list[str]) -> tuple[_Test, _Explain]:
    parsed = [_AssetGlob.parse(g) for g in globs]
    # Fast path: every unpinned glob in one regex, so an asset costs one match, not one per glob.
    free = [g.text for g in parsed if g.namespace is None]
    free_regex = _glob_regex(free) if free else None
    pinned = [g for g in parsed if g.namespace is not None]

    def first_hit(f: _Facts) -> tuple[str, str, str] | None:
        for ns, name, _ in f.assets:
            for g in parsed:
                if g.matches(ns, name):
                    return ns, name, g.text
        return None

    def test(f: _Facts) -> bool:
        for ns, name, _ in f.assets:
            if free_regex is not None and free_regex.match(name):
                return True
            for g in pinned:
                if g.matches(ns, name):
                    return True
        return False

    def explain(f: _Facts) -> tuple[bool, str]:
        hit = first_hit(f)
        if hit is None:
            names = [n for _, n, _ in f.assets] or ["(no datasets)"]
            return False, f"no dataset of {names} matches {globs}"
        return True, f"dataset {hit[1]!r} ({hit[0]}) matches {hit[2]!r}"

    return test, explain


def _namespace_condition(globs: list[str]) -> tuple[_Test, _Explain]:
    regex = _glob_regex(globs)

    def test(f: _Facts) -> bool:
        return any(regex.match(ns) for ns, _, _ in f.assets)

    def explain(f: _Facts) -> tuple[bool, str]:
        for ns, _, _ in f.assets:
            if regex.match(ns):
                return True, f"namespace {ns!r} matches {globs}"
        return False, f"no namespace matches {globs}"

    return test, explain


def _classification_condition(globs: list[str]) -> tuple[_Test, _Explain]:
    regex = _glob_regex(globs)

    def test(f: _Facts) -> bool:
        return any(regex.match(c) for c in f.classifications)

    def explain(f: _Facts) -> tuple[bool, str]:
        for ns, name, classes in f.assets:
            for c in sorted(classes):
                if regex.match(c):
                    origin = f.sources.get((ns, name), {}).get(c)
                    via = f" ({origin})" if origin else ""
                    return True, f"dataset {name!r} is classified {c!r}{via}, which matches {globs}"
        have = sorted(f.classifications) or ["(none)"]
        return False, f"classifications {have} do not match {globs}"

    return test, explain


def _requester_condition(spec: RequesterMatchSpec) -> tuple[_Test, _Explain]:
    checks: list[tuple[str, re.Pattern[str], list[str]]] = []
    for key in ("orchestrator", "job", "owner", "triggered_by", "principal"):
        globs = getattr(spec, key)
        if globs:
            checks.append((key, _glob_regex(globs), globs))

    def values(r: Requester, key: str) -> list[str]:
        raw = getattr(r, key) or ""
        if key == "owner":
            return [p.strip() for p in raw.split(",") if p.strip()] or [""]
        return [raw]

    def explain(f: _Facts) -> tuple[bool, str]:
        said = []
        for key, regex, globs in checks:
            vals = values(f.requester, key)
            if not any(regex.match(v) for v in vals):
                return False, f"requester {key} {vals} does not match {globs}"
            said.append(f"requester {key} {vals} matches {globs}")
        return True, "; ".join(said)

    def test(f: _Facts) -> bool:
        return all(
            any(regex.match(v) for v in values(f.requester, key)) for key, regex, _ in checks
        )

    return test, explain


@dataclass(frozen=True)
class _Rule:
    index: int
    name: str
    outcome: Outcome
    # The action-kind condition is applied by the kind index, not by ``tests``.
    kinds: re.Pattern[str] | None  # None: the rule applies to every kind
    tests: tuple[_Test, ...]
    explains: tuple[_Explain, ...]
    requirement: Requirement | None
    notify: tuple[str, ...]
    reason: str


def _compile_rule(index: int, spec: RuleSpec) -> _Rule:
    m = spec.match
    tests: list[_Test] = []
    explains: list[_Explain] = []
    kinds: re.Pattern[str] | None = None

    def add(pair: tuple[_Test, _Explain]) -> None:
        tests.append(pair[0])
        explains.append(pair[1])

    if m.actions:
        lowered = [a.lower() for a in m.actions]
        kinds = _glob_regex(lowered)
        explains.append(_any_glob("action kind", lowered, lambda f: f.kind)[1])
    if m.datasets:
        add(_dataset_condition(m.datasets))
    if m.namespaces:
        add(_namespace_condition(m.namespaces))
    if m.classifications:
        add(_classification_condition([c.lower() for c in m.classifications]))
    if m.environments:
        add(_any_glob("environment", [e.lower() for e in m.environments], lambda f: f.environment))
    if m.destinations:
        add(_any_glob("destination", m.destinations, lambda f: f.destination))
    if m.requester:
        add(_requester_condition(m.requester))
    return _Rule(
        index=index,
        name=spec.name,
        outcome=spec.outcome,
        kinds=kinds,
        tests=tuple(tests),
        explains=tuple(explains),
        requirement=Requirement.from_spec(spec.require) if spec.require else None,
        notify=tuple(spec.notify),
        reason=spec.reason or spec.description,
    )


class Policy:
    """A validated, compiled policy. Build it with :func:`load_policy` or :meth:`from_text`."""

    def __init__(self, spec: PolicySpec, *, source: str = "<policy>", digest: str = "") -> None:
        self.spec = spec
        self.source = source
        #: sha256 of the file's text: the audit log records which policy decided.
        self.digest = digest
        self.reviewers: dict[str, Reviewer] = {
            r.id: Reviewer(r.id, r.name, r.email, r.slack_id, frozenset(r.groups))
            for r in spec.reviewers
        }
        self._by_field: dict[str, dict[str, Reviewer]] = {
            name: {
                normalize(value): r for r in self.reviewers.values() if (value := getattr(r, name))
            }
            for name in ("id", "email", "slack_id")
        }
        self._classify = [
            ([_AssetGlob.parse(g) for g in c.datasets], frozenset(c.add)) for c in spec.classify
        ]
        self._declassify = [
            ([_AssetGlob.parse(g) for g in d.jobs], frozenset(d.remove)) for d in spec.declassify
        ]
        self._rules = [_compile_rule(i, r) for i, r in enumerate(spec.rules)]
        self._default_requirement = (
            Requirement.from_spec(spec.default_require) if spec.default_require else None
        )
        # The rules that can match each action kind, in order, filled as kinds are seen.
        self._by_kind: dict[str, tuple[_Rule, ...]] = {}

    # ---- construction

    @classmethod
    def from_text(cls, text: str, *, source: str = "<policy>") -> Policy:
        """Validate and compile policy YAML; errors name ``source``, the line and the field."""
        data, lines = _parse_yaml(text, source)
        if not isinstance(data, dict):
            raise PolicyError(
                "a policy is a YAML mapping with version, rules, ...", path=source, line=1
            )
        try:
            spec = PolicySpec.model_validate(data)
        except ValidationError as err:
            first = err.errors()[0]
            loc = [
                p for p in first["loc"] if not (isinstance(p, str) and p.startswith("function-"))
            ]
            msg = first["msg"].removeprefix("Value error, ")
            if first["type"] == "missing":
                msg = "is required"
            elif first["type"] == "extra_forbidden":
                msg = "is not a known field"
            more = err.error_count() - 1
            if more:
                msg += f" (and {more} more error{'s' if more > 1 else ''})"
            raise PolicyError(
                msg, path=source, line=_line_for(lines, loc), field=_field_name(loc)
            ) from err
        _cross_check(spec, lines, source)
        digest = "sha256:" + hashlib.sha256(text.encode()).hexdigest()
        return cls(spec, source=source, digest=digest)

    # ---- queries

    def reviewer(self, reviewer_id: str) -> Reviewer | None:
        """The reviewer with this id, or None."""
        return self.reviewers.get(reviewer_id)

    def resolve(
        self, identity: str, fields: Iterable[str] = ("id", "email", "slack_id")
    ) -> Reviewer | None:
        """The reviewer an authenticated identity (a token's principal, an SSO user, a Slack
        user id) is, by one of ``fields`` compared normalized; None if none is.

        Only an identity that is what it looks like resolves (plain ASCII, nothing invisible),
        so one person enters as one reviewer id however a token or header spells it, and a
        look-alike is nobody. The load checks keep normalized identities unique.
        """
        if not identity.strip() or identity_problem(identity.strip()) is not None:
            return None
        wanted = normalize(identity)
        for name in fields:
            found = self._by_field.get(name, {}).get(wanted)
            if found is not None:
                return found
        return None

    def classifications_of(
        self, asset: Asset, inherited: Mapping[tuple[str, str], Iterable[str]] | None = None
    ) -> frozenset[str]:
        """The asset's effective classifications: its own, the ``classify`` rules', lineage's."""
        out = set(asset.classifications)
        for globs, add in self._classify:
            if any(g.matches(asset.namespace, asset.name) for g in globs):
                out |= add
        if inherited:
            out.update(c.lower() for c in inherited.get((asset.namespace, asset.name), ()))
        return frozenset(out)

    def own_classifications(self, namespace: str, name: str) -> dict[str, str]:
        """What the ``classify`` rules give the dataset, each with the rule that gave it."""
        out: dict[str, str] = {}
        for i, (globs, add) in enumerate(self._classify):
            hit = next((g.text for g in globs if g.matches(namespace, name)), None)
            if hit is not None:
                for c in sorted(add):
                    out.setdefault(c, f"classify[{i}] {hit!r}")
        return out

    def declassified_by(self, namespace: str, name: str) -> frozenset[str]:
        """The classifications a job's outputs do not inherit (``"*"``: none inherited)."""
        out: set[str] = set()
        for globs, remove in self._declassify:
            if any(g.matches(namespace, name) for g in globs):
                out |= remove
        return frozenset(out)

    def classification_sources(
        self, asset: Asset, inherited: Mapping[tuple[str, str], Iterable[str]] | None = None
    ) -> dict[str, str]:
        """Each effective classification of ``asset`` and where it came from (first source)."""
        out: dict[str, str] = {c: "given by the pipeline" for c in asset.classifications}
        for c, why in self.own_classifications(asset.namespace, asset.name).items():
            out.setdefault(c, why)
        if inherited:
            for c in inherited.get((asset.namespace, asset.name), ()):
                out.setdefault(c.lower(), "inherited through lineage")
        return out

    def eligible_reviewers(
        self, requirement: Requirement, requester: Requester
    ) -> tuple[tuple[Reviewer, ...], tuple[tuple[Reviewer, str], ...]]:
        """Members of the requirement's groups, minus the requester in every identity it has."""
        groups = set(requirement.groups)
        eligible: list[Reviewer] = []
        excluded: list[tuple[Reviewer, str]] = []
        for r in self.reviewers.values():
            if groups.isdisjoint(r.groups):
                continue
            why = _why_excluded(r, requester)
            if why:
                excluded.append((r, why))
            else:
                eligible.append(r)
        return tuple(eligible), tuple(excluded)

    def rule_named(self, name: str | None) -> tuple[Requirement | None, tuple[str, ...]]:
        """The requirement and notify targets of the rule called ``name`` (the default's for
        None or a rule no longer in the policy)."""
        for rule in self._rules:
            if rule.name == name:
                return rule.requirement, rule.notify or tuple(self.spec.default_notify)
        return self._default_requirement, tuple(self.spec.default_notify)

    def members(self, groups: Iterable[str]) -> tuple[Reviewer, ...]:
        """The reviewers in any of ``groups``, in policy order."""
        wanted = set(groups)
        return tuple(r for r in self.reviewers.values() if not wanted.isdisjoint(r.groups))

    def may_decide(
        self, reviewer_id: str, groups: Iterable[str], requester: Requester
    ) -> str | None:
        """None if ``reviewer_id`` may decide; otherwise why not, in a sentence.

        ``groups`` are the groups of the rule that opened the request.
        """
        reviewer = self.reviewers.get(reviewer_id)
        if reviewer is None:
            return f"{reviewer_id!r} is not a reviewer in the policy"
        why = _why_excluded(reviewer, requester)
        if why:
            return f"{reviewer_id!r} cannot approve this request: {why}"
        wanted = sorted(set(groups))
        if reviewer.groups.isdisjoint(wanted):
            return f"{reviewer_id!r} is not in any of the groups {wanted}"
        return None

    def evaluate(
        self,
        action: Action,
        requester: Requester | None = None,
        *,
        inherited: Mapping[tuple[str, str], Iterable[str]] | None = None,
        explain: bool = False,
    ) -> Evaluation:
        """Decide ``action``. ``inherited`` holds classifications lineage gave datasets.

        With ``explain=True`` the result also says why the rule matched and why each earlier
        rule did not (slower; for ``sluicegate policy check``).
        """
        requester = requester or Requester()
        assets = [
            (a.namespace, a.name, self.classifications_of(a, inherited)) for a in action.assets
        ]
        union: frozenset[str] = (
            frozenset().union(*(c for _, _, c in assets)) if assets else frozenset()
        )
        facts = _Facts(
            kind=action.kind,
            assets=assets,
            classifications=union,
            environment=action.environment or "",
            destination=action.destination or "",
            requester=requester,
            sources={a.key: self.classification_sources(a, inherited) for a in action.assets}
            if explain
            else {},
        )
        # The kind index only skips rules that cannot match; explaining walks them all.
        candidates = self._rules if explain else self._candidates(action.kind)
        trace: list[str] = []
        for rule in candidates:
            if explain and rule.kinds is not None and not rule.kinds.match(action.kind):
                trace.append(self._why_not(rule, facts))
                continue
            for test in rule.tests:  # a plain loop: all(genexpr) costs a third more here
                if not test(facts):
                    break
            else:
                reasons = self._reasons(rule, facts) if explain else ()
                return self._result(
                    rule.outcome,
                    rule.name,
                    rule.requirement,
                    rule.notify,
                    rule.reason,
                    reasons,
                    requester,
                    assets,
                    trace,
                )
            if explain:
                trace.append(self._why_not(rule, facts))
        why = ("no rule matched; the policy default applies",)
        return self._result(
            self.spec.default,
            None,
            self._default_requirement,
            tuple(self.spec.default_notify),
            "",
            why,
            requester,
            assets,
            trace,
        )

    # ---- helpers

    def _candidates(self, kind: str) -> tuple[_Rule, ...]:
        found = self._by_kind.get(kind)
        if found is None:
            found = tuple(r for r in self._rules if r.kinds is None or r.kinds.match(kind))
            # Kinds are free-form: cap the cache so a stream of made-up kinds cannot grow it.
            if len(self._by_kind) < 4096:
                self._by_kind[kind] = found
        return found

    @staticmethod
    def _reasons(rule: _Rule, facts: _Facts) -> tuple[str, ...]:
        if not rule.explains:
            return (f"rule {rule.name!r} has no conditions, so it matches every action",)
        return tuple(e(facts)[1] for e in rule.explains)

    @staticmethod
    def _why_not(rule: _Rule, facts: _Facts) -> str:
        for e in rule.explains:
            ok, sentence = e(facts)
            if not ok:
                return f"{rule.name}: {sentence}"
        return f"{rule.name}: matches"

    def _result(
        self,
        outcome: Outcome,
        rule: str | None,
        requirement: Requirement | None,
        notify: tuple[str, ...],
        reason: str,
        reasons: tuple[str, ...],
        requester: Requester,
        assets: list[tuple[str, str, frozenset[str]]],
        trace: list[str],
    ) -> Evaluation:
        eligible: tuple[Reviewer, ...] = ()
        excluded: tuple[tuple[Reviewer, str], ...] = ()
        if outcome == "require" and requirement is not None:
            eligible, excluded = self.eligible_reviewers(requirement, requester)
        return Evaluation(
            outcome=outcome,
            rule=rule,
            reasons=reasons,
            requirement=requirement if outcome == "require" else None,
            eligible=eligible,
            excluded=excluded,
            notify=notify,
            reason=reason,
            classifications={f"{ns}::{name}": tuple(sorted(c)) for ns, name, c in assets},
            trace=tuple(trace),
        )


def _why_excluded(reviewer: Reviewer, requester: Requester) -> str | None:
    # Every field is free text that may name several people (owners: "carol, dave").
    for label, value in (
        ("the requester's principal", requester.principal),
        ("the user who triggered the run", requester.triggered_by),
        ("the job owner", requester.owner),
    ):
        if value and reviewer.is_any_of((value,)):
            return f"is {label}"
    return None


_IDENTITY_FIELDS = ("id", "email", "slack_id")


def _check_identities(
    reviewers: Sequence[ReviewerSpec], fail: Callable[[str, tuple[Any, ...]], None]
) -> None:
    """One person is one reviewer: every identity is what it looks like, and no two
    reviewers' identities could pass for each other (self-exclusion compares look-alikes as
    the same person, so a look-alike pair would exclude both, or let one person count twice).
    """
    owners: dict[str, tuple[int, str]] = {}
    for i, r in enumerate(reviewers):
        for name in _IDENTITY_FIELDS:
            value = getattr(r, name)
            if value is None:
                continue
            why = identity_problem(value)
            if why:
                fail(f"{name} {value!r} {why}", ("reviewers", i, name))
            # An address counts by its local part too: self-exclusion reads "carol" as
            # carol@example.com, so a reviewer "carol" beside it would be the same person.
            own = skeleton(value)  # first, so the message names the closest look-alike
            for key in sorted(identity_keys(value), key=lambda k: (k != own, k)):
                j, other_field = owners.setdefault(key, (i, name))
                if j != i:
                    other = reviewers[j]
                    fail(
                        f"{name} {value!r} could be taken for {other_field} "
                        f"{getattr(other, other_field)!r} of reviewer {other.id!r}: "
                        "one person must be one reviewer, with identities that look different",
                        ("reviewers", i, name),
                    )


def _cross_check(spec: PolicySpec, lines: Mapping[tuple[Any, ...], int], source: str) -> None:
    """Checks that span fields: unique names, groups that exist, quorums that can be met."""

    def fail(msg: str, loc: tuple[Any, ...]) -> None:
        raise PolicyError(msg, path=source, line=_line_for(lines, loc), field=_field_name(loc))

    seen_ids: set[str] = set()
    members: dict[str, int] = {}
    for i, r in enumerate(spec.reviewers):
        if r.id in seen_ids:
            fail(f"reviewer id {r.id!r} is defined twice", ("reviewers", i, "id"))
        seen_ids.add(r.id)
        for g in set(r.groups):
            members[g] = members.get(g, 0) + 1
    _check_identities(spec.reviewers, fail)

    def check_require(req: RequireSpec | None, loc: tuple[Any, ...], outcome: str) -> None:
        if outcome == "require" and req is None:
            what = "default_require" if loc[0] in ("default", "default_require") else "require"
            fail(f"outcome require needs a {what} block (approvals, groups)", loc)
        if outcome != "require" and req is not None:
            fail(f"a require block only goes with outcome require, not {outcome}", loc)
        if req is None:
            return
        for j, g in enumerate(req.groups):
            if g not in members:
                fail(f"group {g!r} has no reviewers", (*loc, "groups", j))
        for j, g in enumerate(req.escalate_to):
            if g not in members:
                fail(f"group {g!r} has no reviewers", (*loc, "escalate_to", j))
        available = sum(1 for r in spec.reviewers if not set(r.groups).isdisjoint(req.groups))
        if req.approvals > available:
            fail(
                f"needs {req.approvals} approvals but groups {req.groups} "
                f"have {available} reviewer(s)",
                (*loc, "approvals"),
            )

    seen_rules: set[str] = set()
    for i, rule in enumerate(spec.rules):
        if rule.name in seen_rules:
            fail(f"rule name {rule.name!r} is used twice", ("rules", i, "name"))
        seen_rules.add(rule.name)
        check_require(
            rule.require, ("rules", i, "require") if rule.require else ("rules", i), rule.outcome
        )
    check_require(
        spec.default_require,
        ("default_require",) if spec.default_require else ("default",),
        spec.default,
    )
