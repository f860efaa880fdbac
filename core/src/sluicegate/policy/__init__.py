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

The package, one concern a module, in the order a policy goes through them:

- :mod:`~sluicegate.policy.schema`: what the file may hold (pydantic specs);
- :mod:`~sluicegate.policy.loading`: YAML with lines, validation, checks across fields;
- :mod:`~sluicegate.policy.conditions`: what a rule's ``match`` compiles to;
- :mod:`~sluicegate.policy.eligibility`: reviewers, and who may not approve;
- :mod:`~sluicegate.policy.engine`: :class:`Policy`, which evaluates an action;
- :mod:`~sluicegate.policy.evaluation`: what it returns (:class:`Evaluation`).
"""

from __future__ import annotations

from sluicegate.policy.eligibility import Reviewer
from sluicegate.policy.engine import Policy, load_policy
from sluicegate.policy.evaluation import Evaluation, Requirement
from sluicegate.policy.schema import (
    ClassifySpec,
    DeclassifySpec,
    MatchSpec,
    PolicySpec,
    RequesterMatchSpec,
    RequireSpec,
    ReviewerSpec,
    RuleSpec,
)
from sluicegate.timefmt import parse_duration

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
