"""Eligibility: the rule's groups minus the requester, in every identity and look-alike."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from sluicegate.exceptions import PolicyError
from sluicegate.model import Requester
from sluicegate.policy import load_policy
from tests.core.support.policytext import act, policy

# ----------------------------------------------------------------- eligibility


REQUIRE = """
- name: pii-export
  match: {actions: [export]}
  outcome: require
  require: {approvals: 2, groups: [stewards], comment_on_deny: true, timeout: 24h}
  notify: ['slack:#data-approvals']
"""


def test_eligible_reviewers_are_the_groups_members() -> None:
    ev = policy(REQUIRE).evaluate(act(), Requester())
    assert [r.id for r in ev.eligible] == ["alice", "bob", "carol"]
    assert ev.requirement is not None and ev.requirement.approvals == 2
    assert ev.notify == ("slack:#data-approvals",)


@pytest.mark.parametrize(
    ("requester", "excluded", "why"),
    [
        (Requester(principal="alice"), "alice", "principal"),
        (Requester(triggered_by="BOB@example.com"), "bob", "triggered the run"),
        (Requester(owner="dave,carol"), "carol", "job owner"),
        (Requester(triggered_by="U01ALICE"), "alice", "triggered the run"),
    ],
)
def test_the_requester_is_never_eligible_in_any_identity(
    requester: Requester, excluded: str, why: str
) -> None:
    p = policy(REQUIRE)
    ev = p.evaluate(act(), requester)
    assert excluded not in [r.id for r in ev.eligible]
    assert [(r.id, w) for r, w in ev.excluded if why in w] == [(excluded, ev.excluded[0][1])]
    refusal = p.may_decide(excluded, ["stewards"], requester)
    assert refusal is not None and why in refusal


def test_may_decide_refuses_unknown_and_out_of_group_reviewers() -> None:
    p = policy(REQUIRE)
    assert p.may_decide("alice", ["stewards"], Requester()) is None
    assert "not a reviewer" in (p.may_decide("mallory", ["stewards"], Requester()) or "")
    assert "not in any of the groups" in (p.may_decide("erin", ["stewards"], Requester()) or "")


def test_unsatisfiable_quorum_is_reported() -> None:
    ev = policy(REQUIRE).evaluate(act(), Requester(owner="alice", triggered_by="bob"))
    assert [r.id for r in ev.eligible] == ["carol"]
    assert ev.satisfiable is False


# ----------------------------------------------------------------- look-alike identities


def fullwidth(text: str) -> str:
    """``text`` in full-width forms, which NFKC turns back into ASCII."""
    return "".join(chr(ord(c) + 0xFEE0) for c in text)


STEWARDS = """
reviewers:
  - {id: alice, email: alice@example.com, slack_id: U01ALICE, groups: [stewards]}
  - {id: bob, email: bob@example.com, slack_id: U01BOB, groups: [stewards]}
  - {id: carol, email: carol@example.com, slack_id: U01CAROL, groups: [stewards]}
"""

#: How carol's identity reached the gate from orchestrators, Slack and the API, none of which
#: excluded her before: each must name carol, and nobody else.
CAROL_LOOKALIKES = [
    pytest.param("car\u200bol", id="zero-width-space"),
    pytest.param("car\u00adol", id="soft-hyphen"),
    pytest.param("\u202ecarol", id="bidi-override"),
    pytest.param("car\u200aol", id="hair-space"),
    pytest.param(fullwidth("carol"), id="full-width"),
    pytest.param("\u0441\u0430r\u043el", id="cyrillic-c-a-o"),
    pytest.param("\u03f2ar\u03bfl", id="greek-lunate-sigma-omicron"),
    pytest.param("caro1", id="digit-one-for-l"),
    pytest.param("CAROI", id="capital-i-for-l"),
    pytest.param("car\ua74bl", id="unmapped-look-alike-o"),
    pytest.param("<@U01CAROL>", id="slack-mention"),
    pytest.param("<@U01CAROL|carol>", id="slack-mention-with-label"),
    pytest.param("@carol", id="at-handle"),
    pytest.param("Carol <carol@example.com>", id="rfc5322-name-addr"),
    pytest.param('"Poe, Carol" <carol@example.com>', id="rfc5322-quoted-name"),
    pytest.param("mailto:carol@example.com", id="mailto"),
    pytest.param("user:carol", id="dagster-user-prefix"),
    pytest.param("user:carol@example.com", id="dagster-user-address"),
    pytest.param("carol+etl@example.com", id="plus-address"),
    pytest.param("carol@other.example", id="local-part"),
    pytest.param("dave;carol", id="semicolon-list"),
    pytest.param("dave\u3001carol", id="ideographic-comma-list"),
    pytest.param(
        "team:stewards, user:\u0441\u0430r\u043el@\u0435\u0445\u0430mple.com",
        id="dagster-owners-cyrillic",
    ),
    pytest.param("dave; <@U01CAROL|Carol>", id="list-with-mention"),
    pytest.param(fullwidth("CAROL@EXAMPLE.COM"), id="full-width-address"),
]


@pytest.mark.parametrize("who", CAROL_LOOKALIKES)
@pytest.mark.parametrize(
    ("field", "why"),
    [
        ("owner", "is the job owner"),
        ("triggered_by", "is the user who triggered the run"),
        ("principal", "is the requester's principal"),
    ],
)
def test_a_look_alike_of_carol_anywhere_in_the_requester_excludes_carol(
    who: str, field: str, why: str
) -> None:
    p = policy(REQUIRE, reviewers=STEWARDS)
    requester = Requester(**{field: who})
    ev = p.evaluate(act(), requester)
    assert [r.id for r in ev.eligible] == ["alice", "bob"]
    assert [(r.id, w) for r, w in ev.excluded] == [("carol", why)]
    assert p.may_decide("carol", ["stewards"], requester) == (
        f"'carol' cannot approve this request: {why}"
    )


def test_a_reviewer_is_resolved_from_a_spelling_of_their_own_identity_only() -> None:
    p = policy(REQUIRE, reviewers=STEWARDS)
    for spelling in ("carol", "Carol", "CAROL@Example.com", " carol@example.com", "u01carol"):
        found = p.resolve(spelling)
        assert found is not None and found.id == "carol", spelling
    for look_alike in (
        "\u0441\u0430r\u043el",
        "car\u200bol",
        fullwidth("carol"),
        "caro1",
        "<@U01CAROL>",
        "user:carol",
    ):
        assert p.resolve(look_alike) is None, look_alike
    assert p.resolve("carol", fields=("slack_id",)) is None
    found = p.resolve("U01CAROL", fields=("slack_id",))
    assert found is not None and found.id == "carol"


@pytest.mark.parametrize(
    ("reviewers", "expected"),
    [
        pytest.param(
            """
            - {id: carol, email: c\u0430rol@example.com}
            """,
            ":3: reviewers[0].email: email 'c\u0430rol@example.com' holds '\u0430' "
            "(U+0430 CYRILLIC SMALL LETTER A), which is not ASCII",
            id="cyrillic-letter-in-email",
        ),
        pytest.param(
            """
            - {id: carol, email: \uff43arol@example.com}
            """,
            ":3: reviewers[0].email: email '\uff43arol@example.com' holds '\uff43' "
            "(U+FF43 FULLWIDTH",
            id="full-width-email",
        ),
        pytest.param(
            """
            - {id: carol, slack_id: "U01\\u200bCAROL"}
            """,
            ":3: reviewers[0].slack_id: slack_id 'U01\\u200bCAROL' holds an invisible "
            "character (U+200B ZERO WIDTH SPACE)",
            id="zero-width-slack-id",
        ),
        pytest.param(
            """
            - {id: carol, email: carol @example.com}
            """,
            ":3: reviewers[0].email: email 'carol @example.com' holds whitespace",
            id="space-in-email",
        ),
        pytest.param(
            """
            - {id: carol}
            - {id: Carol}
            """,
            ":4: reviewers[1].id: id 'Carol' could be taken for id 'carol' of reviewer 'carol'",
            id="ids-differing-in-case",
        ),
        pytest.param(
            """
            - {id: carol}
            - {id: caro1}
            """,
            ":4: reviewers[1].id: id 'caro1' could be taken for id 'carol' of reviewer 'carol'",
            id="digit-one-for-l",
        ),
        pytest.param(
            """
            - {id: mary}
            - {id: rnary}
            """,
            ":4: reviewers[1].id: id 'rnary' could be taken for id 'mary' of reviewer 'mary'",
            id="rn-for-m",
        ),
        pytest.param(
            """
            - {id: carol, email: carol@example.com}
            - {id: cpoe, email: CAROL@example.com}
            """,
            ":4: reviewers[1].email: email 'CAROL@example.com' could be taken for email "
            "'carol@example.com' of reviewer 'carol'",
            id="one-address-twice",
        ),
        pytest.param(
            """
            - {id: carol, slack_id: U01CAROL}
            - {id: carol2, slack_id: U01CAROL}
            """,
            ":4: reviewers[1].slack_id: slack_id 'U01CAROL' could be taken for slack_id "
            "'U01CAROL' of reviewer 'carol'",
            id="one-slack-id-twice",
        ),
        pytest.param(
            """
            - {id: carol}
            - {id: cpoe, email: carol@example.com}
            """,
            ":4: reviewers[1].email: email 'carol@example.com' could be taken for id 'carol' "
            "of reviewer 'carol'",
            id="address-of-another-reviewers-id",
        ),
    ],
)
def test_reviewer_identities_that_could_pass_for_another_are_refused_at_load(
    tmp_path: Path, reviewers: str, expected: str
) -> None:
    body = "version: 1\nreviewers:\n" + textwrap.indent(textwrap.dedent(reviewers).lstrip(), "  ")
    path = tmp_path / "policy.yaml"
    path.write_text(body, encoding="utf-8")
    with pytest.raises(PolicyError) as info:
        load_policy(path)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(str(path))
    assert expected in message
