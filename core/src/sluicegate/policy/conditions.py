"""The conditions a rule's ``match`` compiles to, each fast to test and able to explain itself.

A rule's ``match`` becomes a list of conditions, all of which must hold. Each condition is
a pair: a test that answers True/False on the :class:`Facts` of one action (the hot path,
so globs are compiled into one regular expression per key) and an explanation that answers
the same with a sentence (for ``sluicegate policy check``). The action-kind condition is kept
apart, as a pattern, because the engine indexes rules by kind instead of testing it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from fnmatch import translate

from sluicegate.model import Requester
from sluicegate.policy.schema import MatchSpec, RequesterMatchSpec

__all__ = ["AssetGlob", "Explain", "Facts", "Match", "Test", "compile_match", "glob_regex"]


def glob_regex(globs: Iterable[str]) -> re.Pattern[str]:
    """One regular expression that matches what any of the shell-style ``globs`` matches."""
    return re.compile("|".join(f"(?:{translate(g)})" for g in globs))


@dataclass(frozen=True)
class AssetGlob:
    """A dataset glob, optionally pinned to a namespace glob (``namespace::name``)."""

    text: str
    namespace: re.Pattern[str] | None
    name: re.Pattern[str]

    @classmethod
    def parse(cls, text: str) -> AssetGlob:
        """Compile ``name-glob`` or ``namespace-glob::name-glob``."""
        ns, sep, name = text.partition("::")
        if not sep:
            return cls(text, None, re.compile(translate(text)))
        return cls(text, re.compile(translate(ns)), re.compile(translate(name)))

    def matches(self, namespace: str, name: str) -> bool:
        """True if the dataset ``namespace``/``name`` matches this glob."""
        if self.namespace is not None and self.namespace.match(namespace) is None:
            return False
        return self.name.match(name) is not None


@dataclass
class Facts:
    """What one evaluation looks at, computed once per action."""

    kind: str
    #: (namespace, name, effective classifications) of each input and output.
    assets: list[tuple[str, str, frozenset[str]]]
    classifications: frozenset[str]
    environment: str
    destination: str
    requester: Requester
    #: Only when explaining: (namespace, name) -> classification -> where it came from.
    sources: Mapping[tuple[str, str], Mapping[str, str]] = field(default_factory=dict)


#: A condition answers True/False fast; its ``Explain`` twin answers the same with a sentence.
Test = Callable[[Facts], bool]
Explain = Callable[[Facts], tuple[bool, str]]


@dataclass(frozen=True)
class Match:
    """A compiled ``match``: the kind pattern (None: every kind) and the other conditions.

    ``explains`` has one entry more than ``tests`` when ``kinds`` is set: the kind's
    sentence comes first.
    """

    kinds: re.Pattern[str] | None
    tests: tuple[Test, ...]
    explains: tuple[Explain, ...]


def compile_match(m: MatchSpec) -> Match:
    """Compile a rule's ``match`` block into its conditions."""
    tests: list[Test] = []
    explains: list[Explain] = []
    kinds: re.Pattern[str] | None = None

    def add(pair: tuple[Test, Explain]) -> None:
        tests.append(pair[0])
        explains.append(pair[1])

    if m.actions:
        lowered = [a.lower() for a in m.actions]
        kinds = glob_regex(lowered)
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
    return Match(kinds=kinds, tests=tuple(tests), explains=tuple(explains))


def _any_glob(label: str, globs: list[str], value: Callable[[Facts], str]) -> tuple[Test, Explain]:
    regex = glob_regex(globs)

    def test(f: Facts) -> bool:
        return regex.match(value(f)) is not None

    def explain(f: Facts) -> tuple[bool, str]:
        v = value(f)
        ok = regex.match(v) is not None
        return ok, f"{label} {v!r} {'matches' if ok else 'does not match'} {globs}"

    return test, explain


def _dataset_condition(globs: list[str]) -> tuple[Test, Explain]:
    parsed = [AssetGlob.parse(g) for g in globs]
    # Fast path: every unpinned glob in one regex, so an asset costs one match, not one per glob.
    free = [g.text for g in parsed if g.namespace is None]
    free_regex = glob_regex(free) if free else None
    pinned = [g for g in parsed if g.namespace is not None]

    def first_hit(f: Facts) -> tuple[str, str, str] | None:
        for ns, name, _ in f.assets:
            for g in parsed:
                if g.matches(ns, name):
                    return ns, name, g.text
        return None

    def test(f: Facts) -> bool:
        for ns, name, _ in f.assets:
            if free_regex is not None and free_regex.match(name):
                return True
            for g in pinned:
                if g.matches(ns, name):
                    return True
        return False

    def explain(f: Facts) -> tuple[bool, str]:
        hit = first_hit(f)
        if hit is None:
            names = [n for _, n, _ in f.assets] or ["(no datasets)"]
            return False, f"no dataset of {names} matches {globs}"
        return True, f"dataset {hit[1]!r} ({hit[0]}) matches {hit[2]!r}"

    return test, explain


def _namespace_condition(globs: list[str]) -> tuple[Test, Explain]:
    regex = glob_regex(globs)

    def test(f: Facts) -> bool:
        return any(regex.match(ns) for ns, _, _ in f.assets)

    def explain(f: Facts) -> tuple[bool, str]:
        for ns, _, _ in f.assets:
            if regex.match(ns):
                return True, f"namespace {ns!r} matches {globs}"
        return False, f"no namespace matches {globs}"

    return test, explain


def _classification_condition(globs: list[str]) -> tuple[Test, Explain]:
    regex = glob_regex(globs)

    def test(f: Facts) -> bool:
        return any(regex.match(c) for c in f.classifications)

    def explain(f: Facts) -> tuple[bool, str]:
        for ns, name, classes in f.assets:
            for c in sorted(classes):
                if regex.match(c):
                    origin = f.sources.get((ns, name), {}).get(c)
                    via = f" ({origin})" if origin else ""
                    return True, f"dataset {name!r} is classified {c!r}{via}, which matches {globs}"
        have = sorted(f.classifications) or ["(none)"]
        return False, f"classifications {have} do not match {globs}"

    return test, explain


def _requester_condition(spec: RequesterMatchSpec) -> tuple[Test, Explain]:
    checks: list[tuple[str, re.Pattern[str], list[str]]] = []
    for key in ("orchestrator", "job", "owner", "triggered_by", "principal"):
        globs = getattr(spec, key)
        if globs:
            checks.append((key, glob_regex(globs), globs))

    def values(r: Requester, key: str) -> list[str]:
        raw = getattr(r, key) or ""
        if key == "owner":
            return [p.strip() for p in raw.split(",") if p.strip()] or [""]
        return [raw]

    def explain(f: Facts) -> tuple[bool, str]:
        said = []
        for key, regex, globs in checks:
            vals = values(f.requester, key)
            if not any(regex.match(v) for v in vals):
                return False, f"requester {key} {vals} does not match {globs}"
            said.append(f"requester {key} {vals} matches {globs}")
        return True, "; ".join(said)

    def test(f: Facts) -> bool:
        return all(
            any(regex.match(v) for v in values(f.requester, key)) for key, regex, _ in checks
        )

    return test, explain
