"""From policy text to a checked :class:`~sluicegate.policy.schema.PolicySpec`, with lines.

Loading validates a policy completely: YAML syntax (duplicate keys refused), the schema's
shapes, then the checks that span fields (unique names, groups that have members, quorums
that can be met, reviewer identities that cannot pass for one another). Every error is one
:class:`~sluicegate.exceptions.PolicyError` that names the file, the line and the field, so
the YAML is parsed once into nodes that keep their lines before it becomes data.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from sluicegate.exceptions import PolicyError
from sluicegate.policy.eligibility import check_identities
from sluicegate.policy.schema import PolicySpec, RequireSpec

__all__ = ["Lines", "parse_yaml", "read_policy_file", "spec_from_text"]

#: Each path in the document (``("rules", 0, "require")``) to its line, counted from 1.
Lines = Mapping[tuple[Any, ...], int]

# libyaml's loader is ten times faster than the pure-Python one; both give the same nodes.
_Loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def read_policy_file(path: str | Path) -> str:
    """The text of the policy file at ``path``; a missing or unreadable file is a PolicyError."""
    try:
        return Path(path).read_text(encoding="utf-8")
    except FileNotFoundError as err:
        raise PolicyError("no such file", path=str(path)) from err
    except (OSError, UnicodeDecodeError) as err:
        raise PolicyError(f"cannot read: {err}", path=str(path)) from err


def spec_from_text(text: str, source: str) -> PolicySpec:
    """Parse and validate policy YAML; errors name ``source``, the line and the field."""
    data, lines = parse_yaml(text, source)
    if not isinstance(data, dict):
        raise PolicyError(
            "a policy is a YAML mapping with version, rules, ...", path=source, line=1
        )
    try:
        spec = PolicySpec.model_validate(data)
    except ValidationError as err:
        first = err.errors()[0]
        loc = [p for p in first["loc"] if not (isinstance(p, str) and p.startswith("function-"))]
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
    return spec


def parse_yaml(text: str, source: str) -> tuple[Any, dict[tuple[Any, ...], int]]:
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


def _line_for(lines: Lines, loc: Sequence[Any]) -> int | None:
    path = tuple(loc)
    while path:
        if path in lines:
            return lines[path]
        path = path[:-1]
    return lines.get(())


def _cross_check(spec: PolicySpec, lines: Lines, source: str) -> None:
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
    check_identities(spec.reviewers, fail)

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
