"""Who may approve: reviewers, and why the requester never can, however it is spelled.

The eligible reviewers of a request are the members of its rule's groups minus everyone the
requester is: the API principal that asked, the user that triggered the run and the job owner.
Those are free text from orchestrators, chat and tokens, so a reviewer is excluded when any of
them is, or may pass for, one of the reviewer's identities (:mod:`sluicegate.identity` reads
and compares them). For that comparison to mean one person, the policy's own reviewer
identities must be what they look like and must not pass for one another:
:func:`check_identities` refuses a policy where they could.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sluicegate.identity import identity_keys, identity_problem, lookalikes, skeleton
from sluicegate.model import Requester
from sluicegate.policy.schema import ReviewerSpec

__all__ = ["IDENTITY_FIELDS", "Reviewer", "check_identities", "why_excluded"]

#: The reviewer fields that name the person: compared for self-exclusion, used to resolve.
IDENTITY_FIELDS = ("id", "email", "slack_id")


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


def why_excluded(reviewer: Reviewer, requester: Requester) -> str | None:
    """Why ``reviewer`` may not approve what ``requester`` asked (``"is the job owner"``), or
    None if nothing about the requester excludes them."""
    # Every field is free text that may name several people (owners: "carol, dave").
    for label, value in (
        ("the requester's principal", requester.principal),
        ("the user who triggered the run", requester.triggered_by),
        ("the job owner", requester.owner),
    ):
        if value and reviewer.is_any_of((value,)):
            return f"is {label}"
    return None


def check_identities(
    reviewers: Sequence[ReviewerSpec], fail: Callable[[str, tuple[Any, ...]], None]
) -> None:
    """One person is one reviewer: every identity is what it looks like, and no two
    reviewers' identities could pass for each other (self-exclusion compares look-alikes as
    the same person, so a look-alike pair would exclude both, or let one person count twice).

    ``fail(message, location)`` is called for the first problem (and is expected to raise);
    the location is the field's path in the file, such as ``("reviewers", 1, "email")``.
    """
    owners: dict[str, tuple[int, str]] = {}
    for i, r in enumerate(reviewers):
        for name in IDENTITY_FIELDS:
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
