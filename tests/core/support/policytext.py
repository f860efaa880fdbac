"""Policy text for the policy tests: a policy from a few rules, an action from a few fields."""

from __future__ import annotations

import textwrap

from sluicegate.model import Action, Asset
from sluicegate.policy import Policy

REVIEWERS = """
reviewers:
  - {id: alice, email: alice@example.com, slack_id: U01ALICE, groups: [stewards]}
  - {id: bob, email: bob@example.com, groups: [stewards, platform]}
  - {id: carol, email: carol@example.com, groups: [stewards]}
  - {id: erin, groups: [security]}
"""


def policy(rules: str, *, head: str = "", reviewers: str = REVIEWERS) -> Policy:
    text = (
        "version: 1\n"
        + textwrap.dedent(head)
        + textwrap.dedent(reviewers)
        + "rules:\n"
        + textwrap.indent(textwrap.dedent(rules), "  ")
    )
    return Policy.from_text(text, source="test.yaml")


def act(
    kind: str = "export",
    *,
    inputs: list[tuple[str, str]] | None = None,
    outputs: list[tuple[str, str]] | None = None,
    classes: tuple[str, ...] = (),
    **kw: object,
) -> Action:
    ins = inputs if inputs is not None else [("postgres://prod:5432", "crm.public.customers")]
    return Action(
        kind=kind,
        inputs=tuple(Asset(namespace=n, name=m, classifications=classes) for n, m in ins),
        outputs=tuple(Asset(namespace=n, name=m) for n, m in (outputs or [])),
        **kw,
    )
