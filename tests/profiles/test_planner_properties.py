"""Properties of the planner, checked with hypothesis against networkx and the rules."""

from __future__ import annotations

import itertools
from collections import defaultdict
from datetime import timedelta

import networkx as nx
from hypothesis import given, settings
from hypothesis import strategies as st

from profiles.identity.planner import Message
from profiles.identity.rules import Window, build_rules
from tests.profiles.identity_harness import T0, Store

UNLIMITED = build_rules(
    [("user_id", 1, 10**6, Window.EVER, ()), ("email", 2, 10**6, Window.EVER, ()),
     ("anonymous_id", None, 10**6, Window.EVER, ())],
    max_merges=10**6, max_identities=10**6,
)  # fmt: skip
STRICT = build_rules(
    [("user_id", 1, 1, Window.EVER, ()), ("email", 2, 2, Window.EVER, ()),
     ("anonymous_id", None, 2, Window.WEEKLY, ())],
    max_merges=3, max_identities=5,
)  # fmt: skip
STRICT_EVER = build_rules(
    [("user_id", 1, 1, Window.EVER, ()), ("email", 2, 2, Window.EVER, ()),
     ("anonymous_id", None, 2, Window.EVER, ())],
    max_merges=3, max_identities=5,
)  # fmt: skip

identifier = st.one_of(
    st.tuples(st.just("user_id"), st.sampled_from([f"u{i}" for i in range(5)])),
    st.tuples(st.just("email"), st.sampled_from([f"e{i}@x.io" for i in range(4)])),
    st.tuples(st.just("anonymous_id"), st.sampled_from([f"a{i}" for i in range(8)])),
)
RANK = {"user_id": 1, "email": 2, "anonymous_id": 3}


@st.composite
def messages(draw: st.DrawFn) -> list[Message]:
    count = draw(st.integers(1, 25))
    out = []
    for event_id in range(1, count + 1):
        ids = draw(st.lists(identifier, min_size=1, max_size=3, unique=True))
        ids.sort(key=lambda k: RANK[k[0]])
        minutes = draw(st.integers(0, 60 * 24 * 30))
        out.append(Message(event_id, T0 + timedelta(minutes=minutes), 1, f"m{event_id}", tuple(ids)))
    return out


def run_in_batches(batch: list[Message], cuts: list[int], rules) -> Store:
    store = Store()
    bounds = sorted({0, len(batch), *[c % (len(batch) + 1) for c in cuts]})
    for lo, hi in itertools.pairwise(bounds):
        store.run(batch[lo:hi], rules)
    return store


@settings(max_examples=300, deadline=None)
@given(messages(), st.randoms(use_true_random=False), st.lists(st.integers(0, 30), max_size=4))
def test_without_limits_profiles_are_the_connected_components_in_any_order(batch, rnd, cuts):
    graph = nx.Graph()
    for m in batch:
        graph.add_nodes_from(m.identifiers)
        nx.add_path(graph, m.identifiers)
    expected = {frozenset(c) for c in nx.connected_components(graph)}
    shuffled = list(batch)
    rnd.shuffle(shuffled)
    store = run_in_batches(shuffled, cuts, UNLIMITED)
    assert store.profiles() == expected
    for m in batch:
        assert all(store.owner[k] == store.events[m.event_id] for k in m.identifiers)


@settings(max_examples=300, deadline=None)
@given(messages(), st.lists(st.integers(0, 30), max_size=4))
def test_no_profile_ever_breaks_a_limit_or_a_cap(batch, cuts):
    store = run_in_batches(batch, cuts, STRICT)
    held: dict[int, list[tuple[str, str]]] = defaultdict(list)
    for key, owner in store.owner.items():
        held[owner].append(key)
    for profile, keys in held.items():
        assert len(keys) <= STRICT.max_identities
        assert store.merge_count[profile] <= STRICT.max_merges
        for kind in ("user_id", "email"):
            assert sum(1 for k in keys if k[0] == kind) <= STRICT.rule(kind).limit
        anon = sorted(store.first_seen[k] for k in keys if k[0] == "anonymous_id")
        for t in anon:  # at most 2 anonymous ids added within any week
            assert sum(1 for u in anon if t - timedelta(days=7) < u <= t) <= 2


@settings(max_examples=300, deadline=None)
@given(messages(), st.lists(st.integers(0, 30), max_size=4))
def test_every_event_gets_exactly_one_live_profile(batch, cuts):
    store = run_in_batches(batch, cuts, STRICT)
    assert set(store.events) == {m.event_id for m in batch}
    for m in batch:
        profile = store.events[m.event_id]
        assert profile not in store.merged_into  # live, not a tombstone
        assert any(store.owner.get(k) == profile for k in m.identifiers)


@settings(max_examples=300, deadline=None)
@given(messages(), st.lists(st.integers(0, 30), max_size=4))
def test_processing_the_same_messages_again_changes_nothing(batch, cuts):
    """Planning resolved messages again is a no-op under count limits and caps. (Under
    windowed limits a replanned message could see identifiers whose first-seen time a later
    message set; the service never replans a resolved event, which test_resolution checks.)"""
    store = run_in_batches(batch, cuts, STRICT_EVER)
    before = (store.profiles(), dict(store.events), dict(store.merge_count), dict(store.merged_into))
    again = store.run(batch, STRICT_EVER)
    assert (store.profiles(), dict(store.events), dict(store.merge_count), dict(store.merged_into)) == before
    assert again.new_profiles == () and again.new_identities == () and again.merges == ()


@settings(max_examples=200, deadline=None)
@given(messages(), st.lists(st.integers(0, 30), max_size=4))
def test_batching_does_not_change_the_result(batch, cuts):
    """Incremental (batch by batch, through views) equals one pass: what rebuild relies on."""
    whole, split = Store(), run_in_batches(batch, cuts, STRICT)
    whole.run(batch, STRICT)
    assert split.profiles() == whole.profiles()
    assert split.demotions == whole.demotions
