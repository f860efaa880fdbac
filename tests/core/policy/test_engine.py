"""The policy engine: every match kind, first match wins, explanations, the kind index."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from sluicegate.model import Requester, parse_action
from sluicegate.policy import load_policy
from tests.core.support.paths import POLICY
from tests.core.support.policytext import act, policy

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
    inherited = p.evaluate(derived, inherited={("pg", "mart.customer_360"): ["pii"]}, explain=True)
    assert "(inherited through lineage)" in inherited.reasons[0]


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


def test_example_policy_loads_and_decides_the_design_example() -> None:
    p = load_policy(POLICY)
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
