"""The lineage graph: labels flow downstream, declassifying jobs stop them, walks are bounded."""

from __future__ import annotations

import random
import threading
import time
from collections import deque
from collections.abc import Iterator, Mapping
from itertools import pairwise

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sluicegate.lineage import graph as graph_module
from sluicegate.lineage.graph import (
    MAX_DEPTH,
    Dataset,
    Hop,
    Job,
    LineageGraph,
    Provenance,
)

NS = "postgres://prod:5432"
TAGS = "OpenLineage tags facet"


def ds(name: str) -> Dataset:
    return (NS, name)


def job(name: str) -> Job:
    return ("airflow", name)


def chain(g: LineageGraph, *names: str) -> None:
    """a -> b -> c ... each edge through its own job, named "a_to_b"."""
    for a, b in pairwise(names):
        g.add_run(job(f"{a}_to_{b}"), [ds(a)], [ds(b)])


# ----------------------------------------------------------------- propagation


def test_chain_carries_pii_to_the_end_with_each_job_in_order() -> None:
    g = LineageGraph()
    g.add_tags(ds("a"), {"pii": TAGS})
    chain(g, "a", "b", "c", "d")

    prov = g.classifications(ds("d"))
    assert list(prov) == ["pii"]
    assert prov["pii"] == Provenance(
        label="pii",
        origin=ds("a"),
        reason=TAGS,
        path=(
            Hop(ds("a"), job("a_to_b")),
            Hop(ds("b"), job("b_to_c")),
            Hop(ds("c"), job("c_to_d")),
        ),
    )
    assert g.classifications(ds("a"))["pii"].path == ()
    assert g.labels(ds("c")) == frozenset({"pii"})


def test_diamond_gives_one_label_with_one_provenance() -> None:
    g = LineageGraph()
    g.add_tags(ds("a"), {"pii": TAGS})
    g.add_run(job("split_b"), [ds("a")], [ds("b")])
    g.add_run(job("split_c"), [ds("a")], [ds("c")])
    g.add_run(job("join"), [ds("b"), ds("c")], [ds("d")])

    prov = g.classifications(ds("d"))
    assert list(prov) == ["pii"]
    path = prov["pii"].path
    assert len(path) == 2
    assert path[0].dataset == ds("a")
    assert path[1] in (Hop(ds("b"), job("join")), Hop(ds("c"), job("join")))


def test_cycle_terminates_and_every_member_is_pii() -> None:
    g = LineageGraph()
    chain(g, "a", "b", "c", "a")
    g.add_tags(ds("b"), {"pii": TAGS})

    assert all(g.labels(ds(n)) == {"pii"} for n in "abc")
    prov = g.classifications(ds("a"))["pii"]
    assert prov.origin == ds("b")
    assert prov.path == (Hop(ds("b"), job("b_to_c")), Hop(ds("c"), job("c_to_a")))


def test_two_labels_from_two_origins() -> None:
    g = LineageGraph()
    g.add_tags(ds("customers"), {"pii": TAGS})
    g.add_tags(ds("api_keys"), {"secret": "vault export"})
    g.add_run(job("join"), [ds("customers"), ds("api_keys")], [ds("report")])

    prov = g.classifications(ds("report"))
    assert list(prov) == ["pii", "secret"]
    assert prov["pii"].origin == ds("customers")
    assert prov["pii"].path == (Hop(ds("customers"), job("join")),)
    assert prov["secret"].origin == ds("api_keys")
    assert prov["secret"].reason == "vault export"


def test_tags_added_after_the_edges_flow_downstream() -> None:
    g = LineageGraph()
    chain(g, "a", "b", "c")
    assert g.classifications(ds("c")) == {}
    g.add_tags(ds("a"), {"pii": TAGS})
    assert g.classifications(ds("c"))["pii"].origin == ds("a")


def test_edges_added_after_the_tags_carry_them() -> None:
    g = LineageGraph()
    g.add_tags(ds("a"), {"pii": TAGS})
    chain(g, "b", "c")
    assert g.labels(ds("c")) == frozenset()
    g.add_run(job("a_to_b"), [ds("a")], [ds("b")])  # joins the tagged table to the chain
    assert g.classifications(ds("c"))["pii"].path == (
        Hop(ds("a"), job("a_to_b")),
        Hop(ds("b"), job("b_to_c")),
    )


def test_an_inherited_label_that_is_later_tagged_becomes_the_datasets_own() -> None:
    g = LineageGraph()
    g.add_tags(ds("a"), {"pii": TAGS})
    chain(g, "a", "b", "c")
    g.add_tags(ds("b"), {"pii": "marked by hand"})
    assert g.classifications(ds("b"))["pii"] == Provenance("pii", ds("b"), "marked by hand", ())
    assert g.classifications(ds("c"))["pii"].origin == ds("b")


def test_own_labels_keep_their_first_reason() -> None:
    g = LineageGraph(classify=lambda d: {"pii": "classify[0] 'crm.*'"})
    g.add_tags(ds("crm.customers"), {"pii": TAGS, "prod": TAGS})
    g.add_tags(ds("crm.customers"), {"prod": "again"})
    prov = g.classifications(ds("crm.customers"))
    assert prov["pii"].reason == "classify[0] 'crm.*'"
    assert prov["prod"].reason == TAGS


# ----------------------------------------------------------------- declassification


def masking(*names: str) -> Mapping[Job, frozenset[str]]:
    return {job(n): frozenset({"pii"}) for n in names}


def test_a_masking_job_stops_pii_but_another_path_brings_it_back() -> None:
    rules = masking("mask")
    g = LineageGraph(declassify=lambda j: rules.get(j, frozenset()))
    g.add_tags(ds("a"), {"pii": TAGS, "secret": TAGS})
    g.add_run(job("mask"), [ds("a")], [ds("b")])
    assert g.labels(ds("b")) == {"secret"}  # only the named label is stopped

    g.add_run(job("copy"), [ds("a")], [ds("b")])
    assert g.classifications(ds("b"))["pii"].path == (Hop(ds("a"), job("copy")),)


def test_star_stops_every_inherited_label_but_not_the_outputs_own() -> None:
    g = LineageGraph(declassify=lambda j: frozenset({"*"}) if j == job("anonymise") else set())
    g.add_tags(ds("a"), {"pii": TAGS, "secret": TAGS})
    g.add_tags(ds("b"), {"prod": TAGS})
    g.add_run(job("anonymise"), [ds("a")], [ds("b")])
    assert g.labels(ds("b")) == {"prod"}

    g.add_tags(ds("b"), {"pii": "contains emails"})  # its own pii stays, and flows on
    chain(g, "b", "c")
    prov = g.classifications(ds("c"))
    assert sorted(prov) == ["pii", "prod"]
    assert prov["pii"].origin == ds("b")
    assert prov["pii"].reason == "contains emails"


def test_declassification_is_per_edge_so_a_label_arriving_upstream_of_the_mask_stops_too() -> None:
    g = LineageGraph(declassify=lambda j: frozenset({"pii"}) if j == job("mask") else set())
    g.add_run(job("mask"), [ds("raw")], [ds("masked")])
    chain(g, "masked", "report")
    g.add_tags(ds("raw"), {"pii": TAGS})  # the label arrives after the edges
    assert g.labels(ds("masked")) == frozenset()
    assert g.labels(ds("report")) == frozenset()


# ----------------------------------------------------------------- rules


def test_classify_labels_unknown_datasets_and_graph_nodes_and_flow_on() -> None:
    asked: list[Dataset] = []

    def classify(d: Dataset) -> dict[str, str]:
        asked.append(d)
        return {"pii": "classify[0] 'crm.*'"} if d[1].startswith("crm.") else {}

    g = LineageGraph(classify=classify)
    unknown = g.classifications(ds("crm.leads"))
    assert unknown == {"pii": Provenance("pii", ds("crm.leads"), "classify[0] 'crm.*'", ())}
    assert ds("crm.leads") not in g  # a read does not add the dataset

    g.add_run(job("export"), [ds("crm.customers")], [("s3://share", "customers.csv")])
    g.add_run(job("export"), [ds("crm.customers")], [("s3://share", "customers.csv")])
    prov = g.classifications(("s3://share", "customers.csv"))["pii"]
    assert prov.origin == ds("crm.customers")
    assert prov.reason == "classify[0] 'crm.*'"
    assert asked.count(ds("crm.customers")) == 1  # once, when it first appeared


def test_set_rules_recomputes_with_new_classify_and_declassify() -> None:
    g = LineageGraph(classify=lambda d: {"pii": "rule 1"} if d == ds("a") else {})
    chain(g, "a", "b", "c")
    g.add_tags(ds("c"), {"prod": TAGS})
    assert g.labels(ds("c")) == {"pii", "prod"}

    g.set_rules(classify=lambda d: {"secret": "rule 2"} if d == ds("b") else {})
    assert g.labels(ds("a")) == frozenset()
    assert g.labels(ds("c")) == {"secret", "prod"}  # tags survive a policy change
    assert g.classifications(ds("c"))["secret"].path == (Hop(ds("b"), job("b_to_c")),)

    g.set_rules(declassify=lambda j: frozenset({"secret"}) if j == job("b_to_c") else set())
    assert g.labels(ds("b")) == {"secret"}  # classify kept
    assert g.labels(ds("c")) == {"prod"}

    g.set_rules(classify=None, declassify=None)
    assert g.labels(ds("b")) == frozenset()
    assert g.labels(ds("c")) == {"prod"}
    assert g.classifications(ds("x")) == {}


def test_provenance_is_the_first_path_until_set_rules_makes_it_shortest() -> None:
    g = LineageGraph()
    g.add_tags(ds("a"), {"pii": TAGS})
    chain(g, "a", "b", "c", "d")
    g.add_run(job("shortcut"), [ds("a")], [ds("d")])
    assert len(g.classifications(ds("d"))["pii"].path) == 3  # the first way it arrived
    g.set_rules()
    assert g.classifications(ds("d"))["pii"].path == (Hop(ds("a"), job("shortcut")),)


# ----------------------------------------------------------------- edges


def test_edges_are_deduplicated_and_self_edges_are_harmless() -> None:
    g = LineageGraph()
    assert g.add_run(job("etl"), [ds("a"), ds("b")], [ds("c"), ds("d")]) == 4
    assert g.add_run(job("etl"), [ds("a"), ds("b")], [ds("c"), ds("d")]) == 0
    assert g.add_run(job("etl"), [ds("a"), ds("a")], [ds("c")]) == 0
    assert g.add_run(job("other"), [ds("a")], [ds("c")]) == 1  # another job, another edge
    assert g.add_run(job("upsert"), [ds("c")], [ds("c")]) == 1
    g.add_tags(ds("a"), {"pii": TAGS})
    assert g.classifications(ds("c"))["pii"].origin == ds("a")
    assert (len(g), g.dataset_count, g.edge_count, g.job_count) == (4, 4, 6, 3)


def test_a_busy_source_still_deduplicates() -> None:
    g = LineageGraph()
    outs = [ds(f"out{i}") for i in range(100)]
    assert g.add_run(job("fanout"), [ds("src")], outs) == 100
    assert g.add_run(job("fanout"), [ds("src")], outs) == 0
    assert g.add_run(job("fanout"), [ds("src")], [*outs, ds("new")]) == 1
    assert g.edge_count == 101


def test_a_run_with_no_outputs_records_its_datasets_but_no_edges() -> None:
    g = LineageGraph(classify=lambda d: {"pii": "rule"})
    assert g.add_run(job("read"), [ds("a")], []) == 0
    assert ds("a") in g
    assert g.edge_count == 0
    assert g.job_count == 1


def test_bad_input_names_the_value() -> None:
    g = LineageGraph()
    with pytest.raises(TypeError, match="pair of strings"):
        g.add_run(job("etl"), [("ns", 3)], [ds("b")])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="'\\*'"):
        g.add_tags(ds("a"), {"*": TAGS})
    g2 = LineageGraph(declassify=lambda j: "pii")  # type: ignore[arg-type,return-value]
    with pytest.raises(TypeError, match="set of labels"):
        g2.add_run(job("mask"), [ds("a")], [ds("b")])
    assert g2.job_count == 0


def test_a_failing_classify_leaves_the_graph_as_it_was() -> None:
    def classify(d: Dataset) -> dict[str, str]:
        if d == ds("bad"):
            raise RuntimeError("rule exploded")
        return {}

    g = LineageGraph(classify=classify)
    chain(g, "a", "b")
    with pytest.raises(RuntimeError):
        g.add_run(job("etl"), [ds("a")], [ds("bad")])
    assert ds("bad") not in g
    assert g.edge_count == 1


# ----------------------------------------------------------------- walks


def test_upstream_and_downstream_to_a_depth() -> None:
    g = LineageGraph()
    chain(g, "a", "b", "c", "d")

    one = g.upstream(ds("d"), 1)
    assert one.nodes == ((ds("d"), 0), (ds("c"), 1))
    assert one.edges == ((ds("c"), job("c_to_d"), ds("d")),)
    assert not one.truncated

    two = g.downstream(ds("a"), 2)
    assert two.direction == "downstream"
    assert two.nodes == ((ds("a"), 0), (ds("b"), 1), (ds("c"), 2))
    assert two.edges == (
        (ds("a"), job("a_to_b"), ds("b")),
        (ds("b"), job("b_to_c"), ds("c")),
    )
    assert two.distance(ds("c")) == 2
    assert two.distance(ds("d")) is None
    assert g.downstream(ds("a"), 0).nodes == ((ds("a"), 0),)


def test_walks_on_a_cycle_terminate_and_include_the_closing_edge() -> None:
    g = LineageGraph()
    chain(g, "a", "b", "c", "a")
    sub = g.downstream(ds("a"), MAX_DEPTH)
    assert [d for d, _ in sub.nodes] == [ds("a"), ds("b"), ds("c")]
    assert len(sub.edges) == 3
    assert g.upstream(ds("a"), 1).nodes == ((ds("a"), 0), (ds("c"), 1))


def test_walks_are_capped_and_flag_truncation() -> None:
    g = LineageGraph()
    g.add_run(job("fanout"), [ds("src")], [ds(f"t{i:02d}") for i in range(30)])
    sub = g.downstream(ds("src"), 3, limit=11)
    assert sub.truncated
    assert len(sub.nodes) == 11
    assert [d[1] for d, _ in sub.nodes[1:]] == [f"t{i:02d}" for i in range(10)]  # by name
    assert len(sub.edges) == 10
    assert not g.downstream(ds("src"), 3, limit=31).truncated

    chain(g, *(f"n{i}" for i in range(30)))
    assert g.downstream(ds("n0"), 100).depth == MAX_DEPTH
    assert len(g.downstream(ds("n0"), 100).nodes) == MAX_DEPTH + 1
    with pytest.raises(ValueError, match="depth"):
        g.upstream(ds("n0"), -1)


def test_a_walk_from_an_unknown_dataset_is_just_that_dataset() -> None:
    sub = LineageGraph().upstream(ds("nowhere"), 5)
    assert sub.nodes == ((ds("nowhere"), 0),)
    assert sub.edges == ()


# ----------------------------------------------------------------- against a reference

LABELS = ["pii", "secret", "prod"]
Op = tuple[str, int, tuple[int, ...], tuple[int, ...], str]


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[int, dict[int, set[str]], dict[int, set[str]], list[Op]]:
    n = draw(st.integers(1, 8))
    node = st.integers(0, n - 1)
    label_sets = st.sets(st.sampled_from(LABELS), max_size=2)
    classify = draw(st.dictionaries(node, label_sets, max_size=3))
    declassify = draw(
        st.dictionaries(
            st.integers(0, 3), st.sets(st.sampled_from([*LABELS, "*"]), min_size=1, max_size=2)
        )
    )
    run = st.tuples(
        st.just("run"),
        st.integers(0, 3),
        st.lists(node, min_size=1, max_size=3).map(tuple),
        st.lists(node, min_size=1, max_size=3).map(tuple),
        st.just(""),
    )
    tag = st.tuples(
        st.just("tag"),
        node,
        st.just(()),
        st.just(()),
        st.sampled_from(LABELS),
    )
    ops = draw(st.lists(st.one_of(run, run, tag), max_size=25))
    return n, classify, declassify, ops


class Reference:
    """The same semantics, computed the slow, obvious way: iterate to a fixed point."""

    def __init__(self, classify: dict[int, set[str]], declassify: dict[int, set[str]]):
        self.classify, self.declassify = classify, declassify
        self.edges: set[tuple[int, int, int]] = set()
        self.tags: dict[tuple[int, str], str] = {}  # first reason per (dataset, label)
        self.known: set[int] = set()

    def blocked(self, j: int, label: str) -> bool:
        names = self.declassify.get(j, set())
        return "*" in names or label in names

    def reason(self, d: int, label: str) -> str | None:
        if label in self.classify.get(d, set()):
            return f"classify {d}"
        return self.tags.get((d, label))

    def effective(self) -> dict[int, set[str]]:
        eff = {d: {lab for lab in LABELS if self.reason(d, lab)} for d in self.known}
        changed = True
        while changed:
            changed = False
            for s, j, t in self.edges:
                add = {lab for lab in eff[s] if not self.blocked(j, lab)} - eff[t]
                if add:
                    eff[t] |= add
                    changed = True
        return eff

    def distance(self, d: int, label: str) -> int:
        """Fewest hops from any owner of ``label`` to ``d`` through edges that carry it."""
        seen = {o: 0 for o in self.known | {d} if self.reason(o, label)}
        queue = deque(seen)
        while queue:
            s = queue.popleft()
            for a, j, t in self.edges:
                if a == s and t not in seen and not self.blocked(j, label):
                    seen[t] = seen[s] + 1
                    queue.append(t)
        return seen[d]


def name(i: int) -> Dataset:
    return (NS, f"d{i}")


def check_against(g: LineageGraph, ref: Reference, n: int, shortest: bool) -> None:
    eff = ref.effective()
    edges = {(name(s), job(f"j{j}"), name(t)) for s, j, t in ref.edges}
    jobs = {job(f"j{j}"): j for j in range(4)}
    for d in range(n + 1):  # n: a dataset that never appears
        got = g.classifications(name(d))
        want = eff.get(d, ref.classify.get(d, set()))
        assert set(got) == want
        assert g.labels(name(d)) == want
        for label, prov in got.items():
            assert prov.label == label
            origin = int(prov.origin[1][1:])
            assert prov.reason == ref.reason(origin, label)
            steps = [h.dataset for h in prov.path] + [name(d)]
            assert steps[0] == prov.origin
            for hop, after in zip(prov.path, steps[1:], strict=True):
                assert (hop.dataset, hop.job, after) in edges
                assert not ref.blocked(jobs[hop.job], label)
            if shortest:
                assert len(prov.path) == ref.distance(d, label)


@pytest.fixture(params=["default", "tiny-thresholds"])
def thresholds(request: pytest.FixtureRequest) -> Iterator[None]:
    """Also run with hub sets and dense pointer arrays from the first edge or label on."""
    if request.param == "default":
        yield
        return
    saved = graph_module._HUB, graph_module._DENSE
    graph_module._HUB, graph_module._DENSE = 1, 1000
    try:
        yield
    finally:
        graph_module._HUB, graph_module._DENSE = saved


@pytest.mark.usefixtures("thresholds")
@settings(max_examples=300, deadline=None)
@given(scenarios(), st.randoms(use_true_random=False))
def test_matches_a_fixed_point_reference(
    case: tuple[int, dict[int, set[str]], dict[int, set[str]], list[Op]], rnd: random.Random
) -> None:
    n, classify, declassify, ops = case
    g = LineageGraph(
        classify=lambda d: {lab: f"classify {d[1][1:]}" for lab in classify.get(int(d[1][1:]), ())},
        declassify=lambda j: frozenset(declassify.get(int(j[1][1:]), ())),
    )
    ref = Reference(classify, declassify)
    for k, (kind, a, ins, outs, label) in enumerate(ops):
        if kind == "run":
            new = {(s, a, t) for s in ins for t in outs} - ref.edges
            assert g.add_run(job(f"j{a}"), [name(s) for s in ins], [name(t) for t in outs]) == len(
                new
            )
            ref.edges |= new
            ref.known |= {*ins, *outs}
        else:
            g.add_tags(name(a), {label: f"tag {k}"})
            ref.tags.setdefault((a, label), f"tag {k}")
            ref.known.add(a)
    assert g.edge_count == len(ref.edges)
    assert len(g) == len(ref.known)
    check_against(g, ref, n, shortest=False)

    g.set_rules()  # same rules: same labels, and every path now a shortest one
    check_against(g, ref, n, shortest=True)

    # New rules: a random dataset classified, a random job declassifying everything.
    ref.classify = {rnd.randrange(n): {rnd.choice(LABELS)}}
    ref.declassify = {rnd.randrange(4): {"*"}}
    g.set_rules(
        classify=lambda d: {
            lab: f"classify {d[1][1:]}" for lab in ref.classify.get(int(d[1][1:]), ())
        },
        declassify=lambda j: frozenset(ref.declassify.get(int(j[1][1:]), ())),
    )
    check_against(g, ref, n, shortest=True)


# ----------------------------------------------------------------- threads


def test_readers_see_valid_answers_while_a_writer_adds_and_recomputes() -> None:
    rng = random.Random(5)
    n = 300
    runs = [(rng.randrange(20), rng.randrange(n), rng.randrange(n)) for _ in range(1500)]
    tagged = rng.sample(range(n), 6)
    final = {(name(s), job(f"j{j}"), name(t)) for j, s, t in runs}
    g = LineageGraph(declassify=lambda j: frozenset({"pii"}) if j == job("j0") else set())
    done = threading.Event()
    errors: list[BaseException] = []
    answers = [0]

    def read() -> None:
        r = random.Random(threading.get_ident())
        try:
            while not done.is_set():
                d = name(r.randrange(n))
                for label, prov in g.classifications(d).items():
                    steps = [h.dataset for h in prov.path] + [d]
                    assert steps[0] == prov.origin
                    for hop, after in zip(prov.path, steps[1:], strict=True):
                        assert (hop.dataset, hop.job, after) in final
                        assert not (label == "pii" and hop.job == job("j0"))
                    answers[0] += 1
                g.upstream(d, 3)
        except BaseException as err:  # reported by the main thread
            errors.append(err)

    readers = [threading.Thread(target=read) for _ in range(3)]
    for reader in readers:
        reader.start()
    try:
        for k, (j, s, t) in enumerate(runs):
            if k == len(runs) // 2:  # the readers have answered while the graph grows
                deadline = time.monotonic() + 10
                while answers[0] == 0 and time.monotonic() < deadline:
                    time.sleep(0.001)
            g.add_run(job(f"j{j}"), [name(s)], [name(t)])
            if k % 250 == 0:
                g.add_tags(name(tagged[k // 250]), {rng.choice(["pii", "secret"]): TAGS})
            if k == 1000:
                g.set_rules()
    finally:
        done.set()
        for reader in readers:
            reader.join()
    assert not errors, errors[0]
    assert answers[0] > 0
    assert g.edge_count == len(final)
