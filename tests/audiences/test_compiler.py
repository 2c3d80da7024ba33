"""The compiler, a pure function: its structure for given trees, and for random trees over a
small random population its members equal a plain-Python evaluator's (hypothesis), on the
test's database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.db import connection
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from audiences.compiler import Context, counts_query, members_query, preview_query
from audiences.rules import (
    All,
    Any_,
    AudienceCondition,
    EventCondition,
    Node,
    Not,
    TraitCondition,
    parse_rule,
    rule_nodes,
)
from profiles.models import Event, Identity, Profile
from profiles.query.dialects import POSTGRES, SQLITE, dialect_named
from profiles.query.filters import Filter, filter_matches

NOW = datetime(2026, 11, 15, 12, 0, tzinfo=UTC)
CTX = Context(computed={"score": 7}, audiences={"vip": 3})


def test_each_condition_is_one_set_written_once():
    rule = parse_rule({"all": [
        {"event": "Order Completed", "window": {"within_days": 30}},
        {"not": {"event": "Order Completed", "window": {"within_days": 30}}},  # the same set, negated
        {"trait": "score", "op": ">", "value": 70},
        {"trait": "plan", "op": "=", "value": "pro"},
        {"audience": "vip", "member": False},
    ]})  # fmt: skip
    q = members_query(rule, CTX, POSTGRES, now=NOW)
    # the event set, the computed trait's and the audience's: three sets; who is known is a
    # correlated EXISTS the planner can turn into a semi-join
    assert q.text.count(" AS MATERIALIZED (") == 3
    assert "EXISTS (SELECT 1 FROM profiles_identity i WHERE i.profile_id = p.id AND i.kind IN" in q.text
    assert "profiles_computedtraitvalue v WHERE v.trait_id = %s" in q.text and 7 in q.params
    assert "p.traits #> %s" in q.text  # a custom trait is read off the profile row
    assert "NOT (p.id IN (SELECT id FROM c" in q.text
    assert "audiences_audiencemember m WHERE m.audience_id = %s" in q.text and 3 in q.params


def test_a_count_at_most_is_the_complement_of_more():
    rule = parse_rule({"event": "Page Viewed", "count": {"op": "<=", "value": 2}})
    q = members_query(rule, CTX, SQLITE, now=NOW)
    assert "NOT (p.id IN" in q.text and "HAVING count(*) > %s" in q.text
    assert "(e.type = 'page' OR (e.type = 'track' AND e.event = %s))" in q.text


def test_funnels_nest_and_a_young_parent_waits():
    rule = parse_rule({"event": "Product Added", "then": [
        {"event": "Checkout Started", "within_hours": 2},
        {"event": "Order Completed", "within_hours": 24, "did": False}]})  # fmt: skip
    q = members_query(rule, CTX, POSTGRES, now=NOW)
    assert q.text.count("EXISTS (SELECT 1 FROM profiles_event") == 2
    assert "f0.timestamp > e.timestamp AND f0.timestamp <= e.timestamp + %s * interval '1 hour'" in q.text
    assert "f0x.timestamp > f0.timestamp" in q.text and "(NOT EXISTS" in q.text
    assert NOW - timedelta(hours=24) in q.params  # a parent younger than 24 hours does not count yet


def test_only_given_profiles_are_evaluated():
    rule = parse_rule({"event": "Signed Up"})
    q = members_query(rule, CTX, POSTGRES, now=NOW, profile_ids=[5, 9])
    # Their events alone, fenced so the planner reads them by the profile index, and the
    # profiles themselves (identities: per profile, by index).
    assert "FROM (SELECT * FROM profiles_event WHERE profile_id = ANY(ARRAY[5,9]::bigint[]) OFFSET 0) e" in q.text
    assert q.text.count("= ANY(%s::bigint[])") == 1 and [5, 9] in q.params
    q = members_query(rule, CTX, SQLITE, now=NOW, profile_ids=[5, 9])
    assert q.text.count("IN (SELECT value FROM json_each(%s))") == 2  # events, profiles


# --- Against a plain-Python evaluator ------------------------------------------------------

NAMES = ("A", "B", "Page Viewed")
VALUES = st.one_of(st.integers(-2, 3), st.sampled_from(["x", "y", "3", "X"]), st.booleans())
FILTER = st.builds(lambda op, v: {"property": "v", "op": op, "value": v} if op not in ("exists", "not_exists")
                   else {"property": "v", "op": op},
                   st.sampled_from(["=", "!=", ">", "<=", "one_of", "contains", "exists", "not_exists"]),
                   VALUES).map(lambda f: {**f, "value": [f["value"], "x"]} if f["op"] == "one_of" else f)  # fmt: skip
FILTER = FILTER.filter(lambda f: not (f["op"] == "contains" and not isinstance(f.get("value"), str)))
FILTER = FILTER.filter(lambda f: not (f["op"] in (">", "<=") and isinstance(f.get("value"), bool)))
STEP = st.fixed_dictionaries(
    {"event": st.sampled_from(NAMES), "within_hours": st.sampled_from([1.5, 5.5, 30.5]), "did": st.booleans()},
    optional={"where": st.lists(FILTER, max_size=1)},
)
EVENT = st.fixed_dictionaries(
    {"event": st.sampled_from(NAMES)},
    optional={
        "where": st.lists(FILTER, max_size=2),
        "count": st.fixed_dictionaries({"op": st.sampled_from([">=", "=", "<="]), "value": st.integers(0, 3)}),
        "window": st.one_of(
            st.fixed_dictionaries({"within_days": st.sampled_from([1.2, 3.7, 8.3])}),
            st.just({"between_days": [1.2, 3.7]}),
        ),
        "then": st.lists(STEP, min_size=1, max_size=2).map(
            lambda steps: [*[{**s, "did": True} for s in steps[:-1]], steps[-1]]
        ),
    },
)
TRAIT = st.builds(lambda f: {"trait": "t", **{k: v for k, v in f.items() if k != "property"}}, FILTER)
LEAF = st.one_of(EVENT, TRAIT, st.builds(lambda m: {"audience": "vip", "member": m}, st.booleans()))
TREE = st.recursive(LEAF, lambda kids: st.one_of(
    st.lists(kids, min_size=1, max_size=3).map(lambda ns: {"all": ns}),
    st.lists(kids, min_size=1, max_size=3).map(lambda ns: {"any": ns}),
    kids.map(lambda n: {"not": n})), max_leaves=5)  # fmt: skip

PERSON = st.fixed_dictionaries({
    "known": st.booleans(),
    "traits": st.dictionaries(st.just("t"), VALUES, max_size=1),
    "vip": st.booleans(),
    "events": st.lists(st.tuples(st.sampled_from(NAMES), st.integers(0, 240), st.dictionaries(st.just("v"), VALUES,
                                                                                              max_size=1)),
                       max_size=6),
})  # fmt: skip


def _matches(name: str, e: dict[str, Any]) -> bool:
    return e["name"] == name


def _instances_ok(node: EventCondition, events: list[dict[str, Any]]) -> int:
    def chain(parent: dict[str, Any], steps: tuple[Any, ...]) -> bool:
        if not steps:
            return True
        step, rest = steps[0], steps[1:]
        later = [
            e
            for e in events
            if _matches(step.event, e)
            and all(filter_matches(f, e["properties"], now=NOW) for f in step.where)
            and parent["at"] < e["at"] <= parent["at"] + timedelta(hours=step.within_hours)
        ]
        if step.did:
            return any(chain(e, rest) for e in later)
        return not later and parent["at"] <= NOW - timedelta(hours=step.within_hours)

    n = 0
    for e in events:
        if not _matches(node.event, e) or not all(filter_matches(f, e["properties"], now=NOW) for f in node.where):
            continue
        if node.within_days is not None and e["at"] < NOW - timedelta(days=node.within_days):
            continue
        if node.between_days is not None and not (
            NOW - timedelta(days=node.between_days[1]) <= e["at"] <= NOW - timedelta(days=node.between_days[0])
        ):
            continue
        n += chain(e, node.then)
    return n


def evaluate(node: Node, person: dict[str, Any]) -> bool:
    if isinstance(node, All):
        return all(evaluate(n, person) for n in node.nodes)
    if isinstance(node, Any_):
        return any(evaluate(n, person) for n in node.nodes)
    if isinstance(node, Not):
        return not evaluate(node.node, person)
    if isinstance(node, TraitCondition):
        return filter_matches(Filter(("t",), node.filter.op, node.filter.value), person["traits"], now=NOW)
    if isinstance(node, AudienceCondition):
        return person["vip"] == node.member
    n = _instances_ok(node, person["events"])
    return {">=": n >= node.count, "=": n == node.count, "<=": n <= node.count}[node.count_op]


@pytest.mark.django_db
@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(trees=st.lists(TREE, min_size=1, max_size=4), people=st.lists(PERSON, min_size=1, max_size=6))
def test_compiled_members_equal_the_python_evaluators(trees, people):
    from audiences.models import Audience, AudienceMember

    vip = Audience.objects.create(key="vip", name="VIP", rule={"event": "A"})
    ctx = Context(computed={}, audiences={"vip": vip.pk})
    by_id: dict[int, dict[str, Any]] = {}
    events = []
    for i, person in enumerate(people):
        profile = Profile.objects.create(traits=person["traits"])
        kind = "user_id" if person["known"] else "anonymous_id"
        Identity.objects.create(kind=kind, value=f"p{i}", profile=profile, first_seen_at=NOW, last_seen_at=NOW)
        if person["vip"]:
            AudienceMember.objects.create(audience=vip, profile_id=profile.pk, entered_at=NOW)
        person["events"] = [{"name": name, "at": NOW - timedelta(hours=hours), "properties": props}
                            for name, hours, props in person["events"]]  # fmt: skip
        for j, e in enumerate(person["events"]):
            page = e["name"] == "Page Viewed"
            events.append(Event(source_id=1, message_id=f"{i}-{j}", type="page" if page else "track",
                                event=None if page else e["name"], timestamp=e["at"], received_at=e["at"],
                                properties=e["properties"], profile=profile))  # fmt: skip
        by_id[profile.pk] = person
    Event.objects.bulk_create(events)
    d = dialect_named(connection.vendor)
    try:
        for tree in trees:
            node = parse_rule(tree)
            for include_anonymous in (False, True):
                c = Context(ctx.computed, ctx.audiences, include_anonymous)
                q = members_query(node, c, d, now=NOW)
                with connection.cursor() as cursor:
                    cursor.execute(q.text, q.params)
                    got = {row[0] for row in cursor.fetchall()}
                expected = {pid for pid, p in by_id.items()
                            if (include_anonymous or p["known"]) and evaluate(node, p)}  # fmt: skip
                assert got == expected, (tree, include_anonymous)
                # The preview: each node alone, counted over who can be a member, and a sample
                # of the members, from the same pass.
                nodes = [n for _, n in rule_nodes(node, "$")]
                can = [p for p in by_id.values() if include_anonymous or p["known"]]
                counts = [sum(evaluate(n, p) for p in can) for n in nodes]
                query = (preview_query if d.name == "postgresql" else counts_query)(nodes, c, d, now=NOW)
                with connection.cursor() as cursor:
                    cursor.execute(query.text, query.params)
                    row = cursor.fetchone()
                if d.name == "postgresql":
                    assert [int(v) for v in row[:-1]] == counts, (tree, include_anonymous)
                    assert set(row[-1]) <= expected and len(row[-1]) == min(20, len(expected))
                else:
                    assert [int(v or 0) for v in row] == counts, (tree, include_anonymous)
    finally:
        Event.objects.all().delete()
        AudienceMember.objects.all().delete()
        Identity.objects.all().delete()
        Profile.objects.all().delete()
        Audience.objects.all().delete()
