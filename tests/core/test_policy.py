"""The policy engine: every match kind, first match wins, eligibility, and load errors."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sluicegate.exceptions import PolicyError
from sluicegate.model import Action, Asset, Requester, parse_action
from sluicegate.policy import Policy, load_policy, parse_duration

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
        **kw,  # type: ignore[arg-type]
    )


# ----------------------------------------------------------------- matching


def test_action_kinds_match_and_first_match_wins() -> None:
    p = policy("""
        - {name: exports, match: {actions: [export, copy]}, outcome: deny}
        - {name: everything, outcome: allow}
    """)
    assert p.evaluate(act("copy")).rule == "exports"
    assert p.evaluate(act("export")).outcome == "deny"
    assert p.evaluate(act("read")).rule == "everything"


def test_default_applies_when_nothing_matches() -> None:
    p = policy("- {name: reads, match: {actions: [read]}, outcome: allow}", head="default: deny\n")
    ev = p.evaluate(act("delete"))
    assert (ev.outcome, ev.rule) == ("deny", None)


def test_default_require_uses_its_block() -> None:
    p = policy(
        "- {name: reads, match: {actions: [read]}, outcome: allow}",
        head="default: require\ndefault_require: {approvals: 1, groups: [security]}\n",
    )
    ev = p.evaluate(act("delete"))
    assert ev.outcome == "require" and [r.id for r in ev.eligible] == ["erin"]


def test_dataset_globs_match_inputs_or_outputs() -> None:
    p = policy("- {name: crm, match: {datasets: ['crm.*']}, outcome: deny}")
    assert p.evaluate(act(inputs=[("pg", "crm.public.customers")])).rule == "crm"
    assert p.evaluate(act(inputs=[], outputs=[("pg", "crm.x")])).rule == "crm"
    assert p.evaluate(act(inputs=[("pg", "sales.orders")])).rule is None


def test_dataset_glob_with_namespace_pin() -> None:
    p = policy("- {name: prod-crm, match: {datasets: ['postgres://prod:*::crm.*']}, outcome: deny}")
    assert p.evaluate(act(inputs=[("postgres://prod:5432", "crm.t")])).rule == "prod-crm"
    assert p.evaluate(act(inputs=[("postgres://staging:5432", "crm.t")])).rule is None


def test_namespaces_match() -> None:
    p = policy("- {name: s3, match: {namespaces: ['s3://*']}, outcome: deny}")
    assert p.evaluate(act(outputs=[("s3://bucket", "x")])).rule == "s3"
    assert p.evaluate(act(outputs=[("gs://bucket", "x")])).rule is None


def test_classifications_from_action_classify_rules_and_lineage() -> None:
    p = policy(
        "- {name: pii, match: {classifications: [pii]}, outcome: deny}",
        head="classify:\n  - {datasets: ['crm.public.customers*'], add: [pii]}\n",
    )
    # from the classify rule
    assert p.evaluate(act(inputs=[("pg", "crm.public.customers_v2")])).rule == "pii"
    why = p.evaluate(act(inputs=[("pg", "crm.public.customers_v2")]), explain=True).reasons
    assert why == (
        "dataset 'crm.public.customers_v2' is classified 'pii' (classify[0] "
        "'crm.public.customers*'), which matches ['pii']",
    )
    # from the action itself
    assert p.evaluate(act(inputs=[("pg", "hr.staff")], classes=("PII",))).rule == "pii"
    # from lineage (inherited), e.g. a table derived from a pii table
    derived = act(inputs=[("pg", "mart.customer_360")])
    assert p.evaluate(derived).rule is None
    assert p.evaluate(derived, inherited={("pg", "mart.customer_360"): ["pii"]}).rule == "pii"
    why = p.evaluate(derived, inherited={("pg", "mart.customer_360"): ["pii"]}, explain=True)
    assert "(inherited through lineage)" in why.reasons[0]


def test_environment_destination_and_requester_fields() -> None:
    p = policy("""
        - {name: prod-env, match: {environments: [prod]}, outcome: deny}
        - {name: dest, match: {destinations: ['s3://partner-*']}, outcome: deny}
        - name: agent
          match: {requester: {triggered_by: ['agent:*'], orchestrator: [airflow]}}
          outcome: deny
        - {name: owner, match: {requester: {owner: [carol]}}, outcome: deny}
    """)
    assert p.evaluate(act(environment="PROD")).rule == "prod-env"
    assert p.evaluate(act(destination="s3://partner-share/x")).rule == "dest"
    agent = Requester(orchestrator="airflow", triggered_by="agent:copilot")
    assert p.evaluate(act(), agent).rule == "agent"
    assert p.evaluate(act(), agent.model_copy(update={"orchestrator": "dagster"})).rule is None
    assert p.evaluate(act(), Requester(owner="dave, carol")).rule == "owner"


def test_every_condition_of_a_rule_must_hold() -> None:
    p = policy("- {name: both, match: {actions: [export], classifications: [pii]}, outcome: deny}")
    assert p.evaluate(act("export", classes=("pii",))).rule == "both"
    assert p.evaluate(act("export")).rule is None
    assert p.evaluate(act("read", classes=("pii",))).rule is None


def test_globbed_action_kinds_are_not_skipped_by_the_kind_index() -> None:
    p = policy("""
        - {name: ex-star, match: {actions: ['ex*']}, outcome: deny}
        - {name: export, match: {actions: [export]}, outcome: allow}
    """)
    assert p.evaluate(act("export")).rule == "ex-star"
    assert p.evaluate(act("exfiltrate")).rule == "ex-star"


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


def test_explain_says_why_and_traces_earlier_rules() -> None:
    p = policy("""
        - {name: reads, match: {actions: [read]}, outcome: allow}
        - {name: crm, match: {actions: [export], datasets: ['crm.*']}, outcome: deny, reason: "no"}
    """)
    ev = p.evaluate(act(), explain=True)
    assert ev.rule == "crm"
    assert ev.reasons == (
        "action kind 'export' matches ['export']",
        "dataset 'crm.public.customers' (postgres://prod:5432) matches 'crm.*'",
    )
    assert ev.trace == ("reads: action kind 'export' does not match ['read']",)


# ----------------------------------------------------------------- property: index == linear scan

KINDS = ["export", "copy", "read", "write", "grant", "delete", "exfil"]
GLOBS = ["crm.*", "*.customers", "sales.*", "pg::crm.*", "s3*::*", "*"]


@st.composite
def rule_sets(draw: st.DrawFn) -> str:
    rules = []
    for i in range(draw(st.integers(1, 12))):
        match: dict[str, object] = {}
        if draw(st.booleans()):
            match["actions"] = draw(
                st.lists(st.sampled_from([*KINDS, "ex*"]), min_size=1, max_size=3)
            )
        if draw(st.booleans()):
            match["datasets"] = draw(st.lists(st.sampled_from(GLOBS), min_size=1, max_size=2))
        if draw(st.booleans()):
            match["classifications"] = draw(
                st.lists(st.sampled_from(["pii", "prod", "secret"]), min_size=1, max_size=2)
            )
        outcome = draw(st.sampled_from(["allow", "deny"]))
        rules.append(f"- {{name: r{i}, match: {match!r}, outcome: {outcome}}}".replace("'", '"'))
    return "\n".join(rules)


@settings(max_examples=150, deadline=None)
@given(
    rules=rule_sets(),
    kind=st.sampled_from(KINDS),
    names=st.lists(
        st.tuples(
            st.sampled_from(["pg", "s3://b"]),
            st.sampled_from(["crm.public.customers", "sales.orders", "x.customers"]),
        ),
        max_size=3,
    ),
    classes=st.lists(st.sampled_from(["pii", "prod", "secret"]), max_size=2),
)
def test_indexed_evaluation_agrees_with_a_full_scan(
    rules: str, kind: str, names: list[tuple[str, str]], classes: list[str]
) -> None:
    p = policy(rules)
    action = act(kind, inputs=names, classes=tuple(classes))
    fast = p.evaluate(action)
    slow = p.evaluate(action, explain=True)  # walks every rule in order
    assert (fast.outcome, fast.rule) == (slow.outcome, slow.rule)


# ----------------------------------------------------------------- durations


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90s", 90), ("15m", 900), ("24h", 86400), ("2d", 172800), ("1h30m", 5400), (3600, 3600)],
)
def test_durations(text: str | int, seconds: int) -> None:
    assert parse_duration(text).total_seconds() == seconds


@pytest.mark.parametrize("text", ["", "0s", "1 hour", "h", "-5m", "400d"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


# ----------------------------------------------------------------- load errors


def write(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "policy.yaml"
    path.write_text(textwrap.dedent(body).lstrip())
    return path


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            """
            version: 1
            rules:
              - name: r1
                match: {actions: [export], colour: red}
                outcome: allow
            """,
            ":4: rules[0].match.colour: is not a known field",
        ),
        (
            """
            version: 1
            reviewers:
              - {id: alice, groups: [s]}
            rules:
              - name: r1
                outcome: require
                require:
                  approvals: two
                  groups: [s]
            """,
            ":8: rules[0].require.approvals: Input should be a valid integer",
        ),
        (
            """
            version: 1
            rules:
              - outcome: allow
            """,
            ":3: rules[0].name: is required",
        ),
        (
            """
            version: 1
            rules:
              - name: r1
                outcome: allow
                outcome: deny
            """,
            ":5: rules[0].outcome: duplicate key",
        ),
        (
            """
            version: 1
            rules:
              - name: r1
                match: [
            """,
            ": invalid YAML",
        ),
        (
            """
            version: 2
            rules: []
            """,
            ":1: version: Input should be 1",
        ),
        (
            """
            version: 1
            reviewers:
              - {id: alice, groups: [s]}
            rules:
              - name: r1
                outcome: require
                require: {approvals: 2, groups: [s]}
            """,
            ":7: rules[0].require.approvals: needs 2 approvals but groups ['s'] have 1 reviewer(s)",
        ),
        (
            """
            version: 1
            reviewers:
              - {id: alice, groups: [s]}
            rules:
              - name: r1
                outcome: require
                require: {groups: [nobody]}
            """,
            ":7: rules[0].require.groups[0]: group 'nobody' has no reviewers",
        ),
        (
            """
            version: 1
            rules:
              - name: r1
                outcome: require
            """,
            ":3: rules[0]: outcome require needs a require block",
        ),
        (
            """
            version: 1
            rules:
              - {name: r1, outcome: allow}
              - {name: r1, outcome: deny}
            """,
            ":4: rules[1].name: rule name 'r1' is used twice",
        ),
        (
            """
            version: 1
            reviewers:
              - {id: alice}
              - {id: alice}
            """,
            ":4: reviewers[1].id: reviewer id 'alice' is defined twice",
        ),
        (
            """
            version: 1
            rules:
              - {name: r1, outcome: allow, notify: ['email:x@y']}
            """,
            ":3: rules[0].notify: notify target 'email:x@y' must start with one of "
            "slack:, teams:, webhook:",
        ),
        (
            """
            version: 1
            rules:
              - name: r1
                outcome: require
                require: {groups: [s], timeout: 1 week}
            """,
            ":5: rules[0].require.timeout: duration '1 week' is not like",
        ),
        ("- just a list\n", ":1: a policy is a YAML mapping"),
    ],
)
def test_malformed_policy_fails_in_one_line_naming_file_line_and_field(
    tmp_path: Path, body: str, expected: str
) -> None:
    path = write(tmp_path, body)
    with pytest.raises(PolicyError) as info:
        load_policy(path)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(str(path))
    assert expected in message


def test_missing_policy_file(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match=r"nowhere\.yaml: no such file"):
        load_policy(tmp_path / "nowhere.yaml")


def test_example_policy_loads_and_decides_the_design_example() -> None:
    p = load_policy(Path(__file__).parents[2] / "examples" / "policy.yaml")
    action = parse_action(
        {
            "kind": "export",
            "inputs": [
                {
                    "namespace": "postgres://prod:5432",
                    "name": "crm.public.customers",
                    "classifications": ["pii"],
                }
            ],
            "outputs": [{"namespace": "s3://partner-share", "name": "exports/customers.csv"}],
        }
    )
    ev = p.evaluate(action, Requester(owner="carol", triggered_by="dave"))
    assert (ev.outcome, ev.rule) == ("require", "pii-export")
    assert [r.id for r in ev.eligible] == ["alice", "bob"]
    assert p.digest.startswith("sha256:")


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
    requester = Requester(**{field: who})  # type: ignore[arg-type]
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
