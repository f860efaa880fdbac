"""The engine: a compiled :class:`Policy` decides an action, first match wins.

Evaluation walks the rules in file order and the first whose conditions all hold decides;
no match gives the policy's ``default``. Rules are compiled once when the policy loads
(:mod:`sluicegate.policy.conditions`) and indexed by action kind as kinds are seen, so an
action is tested only against the rules that can match its kind: a thousand-rule policy
still decides well under a millisecond. For ``require``, the result names the eligible
reviewers (:mod:`sluicegate.policy.eligibility`): the rule's groups minus the requester.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from sluicegate.identity import identity_problem, normalize
from sluicegate.model import Action, Asset, Requester
from sluicegate.policy.conditions import AssetGlob, Explain, Facts, Test, compile_match
from sluicegate.policy.eligibility import IDENTITY_FIELDS, Reviewer, why_excluded
from sluicegate.policy.evaluation import Evaluation, Requirement
from sluicegate.policy.loading import read_policy_file, spec_from_text
from sluicegate.policy.schema import Outcome, PolicySpec, RuleSpec

__all__ = ["Policy", "load_policy"]


def load_policy(path: str | Path) -> Policy:
    """Read, validate and compile the policy file at ``path``."""
    return Policy.from_text(read_policy_file(path), source=str(path))


@dataclass(frozen=True)
class _Rule:
    index: int
    name: str
    outcome: Outcome
    # The action-kind condition is applied by the kind index, not by ``tests``.
    kinds: re.Pattern[str] | None  # None: the rule applies to every kind
    tests: tuple[Test, ...]
    explains: tuple[Explain, ...]
    requirement: Requirement | None
    notify: tuple[str, ...]
    reason: str


def _compile_rule(index: int, spec: RuleSpec) -> _Rule:
    match = compile_match(spec.match)
    return _Rule(
        index=index,
        name=spec.name,
        outcome=spec.outcome,
        kinds=match.kinds,
        tests=match.tests,
        explains=match.explains,
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
            for name in IDENTITY_FIELDS
        }
        self._classify = [
            ([AssetGlob.parse(g) for g in c.datasets], frozenset(c.add)) for c in spec.classify
        ]
        self._declassify = [
            ([AssetGlob.parse(g) for g in d.jobs], frozenset(d.remove)) for d in spec.declassify
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
        spec = spec_from_text(text, source)
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
            why = why_excluded(r, requester)
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
        why = why_excluded(reviewer, requester)
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
        facts = Facts(
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
    def _reasons(rule: _Rule, facts: Facts) -> tuple[str, ...]:
        if not rule.explains:
            return (f"rule {rule.name!r} has no conditions, so it matches every action",)
        return tuple(e(facts)[1] for e in rule.explains)

    @staticmethod
    def _why_not(rule: _Rule, facts: Facts) -> str:
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
