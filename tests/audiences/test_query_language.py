"""Segment's audience query language ⇄ the rule tree: each construct, the seed audiences, Segment's
own examples, precedence, errors and their positions, canonical formatting, and (hypothesis)
random trees that format and parse back to themselves. Pure: no database."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from audiences.query_language import MAX_NESTING, QueryParseError, format_query, parse_query
from profiles.query.filters import OPERATORS

E = "event('E')"  # the shortest event, for cases about what follows it


def prop(path: str, op: str, *value: Any) -> dict[str, Any]:
    return {"property": path, "op": op, **({"value": value[0]} if value else {})}


def trait(key: str, op: str, *value: Any) -> dict[str, Any]:
    return {"trait": key, "op": op, **({"value": value[0]} if value else {})}


def event(name: str, **parts: Any) -> dict[str, Any]:
    return {"event": name, **parts}


def audience(key: str, member: bool = True) -> dict[str, Any]:
    return {"audience": key, "member": member}


A, B, C, D = (trait(k, "=", 1) for k in "abcd")
QA, QB, QC, QD = (f"trait('{k}') = 1" for k in "abcd")

# --- the seed audiences ---------------------------------------------------------------------

SEEDS = [
    (  # dormant openers: read our emails (not machine opens), neither buy nor visit
        "event('Email Opened').where(property('machine_open') != true).within(180 days).count() >= 1"
        " AND NOT event('Order Completed').within(180 days).count() >= 1"
        " AND NOT event('Page Viewed').within(180 days).count() >= 1",
        {"all": [
            event("Email Opened", where=[prop("machine_open", "!=", True)], window={"within_days": 180}),
            {"not": event("Order Completed", window={"within_days": 180})},
            {"not": event("Page Viewed", window={"within_days": 180})},
        ]},
    ),
    (  # engaged browsers
        "event('Page Viewed').within(30 days).count() >= 5",
        event("Page Viewed", window={"within_days": 30}, count={"op": ">=", "value": 5}),
    ),
    ("trait('lead_score') > 70", trait("lead_score", ">", 70)),  # hot leads
    (  # pro customers we can write to
        "trait('plan') = 'pro' AND trait('email').exists()",
        {"all": [trait("plan", "=", "pro"), trait("email", "exists")]},
    ),
    (  # cart abandoners: a funnel
        "event('Product Added').where(event('Order Completed').within(parent: 24 hours).count() = 0)"
        ".within(7 days).count() >= 1",
        event("Product Added", window={"within_days": 7},
              then=[{"event": "Order Completed", "within_hours": 24, "did": False}]),
    ),
    (  # audience of audiences
        "audience('hot_leads') AND NOT audience('dormant_openers')",
        {"all": [audience("hot_leads"), {"not": audience("dormant_openers")}]},
    ),
]  # fmt: skip


@pytest.mark.parametrize(("query", "tree"), SEEDS)
def test_seed_audiences_parse_and_format_back(query: str, tree: dict[str, Any]) -> None:
    assert parse_query(query) == tree
    assert format_query(tree) == query.replace("24 hours", "1 day")


# --- each construct -------------------------------------------------------------------------

PARSES = [
    # events: counts
    (f"{E}.count() >= 1", event("E")),
    (f"{E}.count() > 0", event("E")),
    (f"{E}.count() >= 3", event("E", count={"op": ">=", "value": 3})),
    (f"{E}.count() > 3", event("E", count={"op": ">=", "value": 4})),
    (f"{E}.count() = 2", event("E", count={"op": "=", "value": 2})),
    (f"{E}.count() == 2", event("E", count={"op": "=", "value": 2})),
    (f"{E}.count() <= 2", event("E", count={"op": "<=", "value": 2})),
    (f"{E}.count() < 2", event("E", count={"op": "<=", "value": 1})),
    (f"{E}.count() < 1", event("E", count={"op": "<=", "value": 0})),
    (f"{E}.count() = 0", event("E", count={"op": "=", "value": 0})),
    (f"{E}.count().at_least(2)", event("E", count={"op": ">=", "value": 2})),
    (f"{E}.count().greater_than(2)", event("E", count={"op": ">=", "value": 3})),
    (f"{E}.count().less_than(2)", event("E", count={"op": "<=", "value": 1})),
    (f"{E}.count().at_most(2)", event("E", count={"op": "<=", "value": 2})),
    (f"{E}.count().equals(2)", event("E", count={"op": "=", "value": 2})),
    # events: windows
    (f"{E}.within(7 days).count() >= 1", event("E", window={"within_days": 7})),
    (f"{E}.within(1 day).count() >= 1", event("E", window={"within_days": 1})),
    (f"{E}.within(48 hours).count() >= 1", event("E", window={"within_days": 2})),
    (f"{E}.within(24 HOUR).count() >= 1", event("E", window={"within_days": 1})),
    (f"{E}.between(7 days, 30 days).count() >= 1", event("E", window={"between_days": [7, 30]})),
    (f"{E}.between(0 days, 72 hours).count() >= 1", event("E", window={"between_days": [0, 3]})),
    # events: where
    (f"{E}.where(property('a') = 1).count() >= 1", event("E", where=[prop("a", "=", 1)])),
    (f"{E}.where({{property('a') = 1}}).count() >= 1", event("E", where=[prop("a", "=", 1)])),
    (f"{E}.where( property('a.b.c') = 'x' ).count() >= 1", event("E", where=[prop("a.b.c", "=", "x")])),
    (f"{E}.where(property('a') = 1 AND property('b') > 2).count() >= 1",
     event("E", where=[prop("a", "=", 1), prop("b", ">", 2)])),
    (f"{E}.where(property('a') = 1).within(3 days).where(property('b').exists()).count() >= 1",
     event("E", where=[prop("a", "=", 1), prop("b", "exists")], window={"within_days": 3})),
    (f"{E}.where((property('a') = 1 AND (property('b') = 2)) AND property('c') = 3).count() >= 1",
     event("E", where=[prop("a", "=", 1), prop("b", "=", 2), prop("c", "=", 3)])),
    # funnels
    (f"{E}.where(event('F').within(parent: 2 hours).count() >= 1).count() >= 1",
     event("E", then=[{"event": "F", "within_hours": 2, "did": True}])),
    (f"{E}.where(event('F').where(property('x') = 1).within(parent: 5 days).count() > 0 AND property('y') = 2"
     " AND event('G').within(parent: 1 hour).count() <= 0).within(30 days).count() >= 2",
     event("E", where=[prop("y", "=", 2)], window={"within_days": 30}, count={"op": ">=", "value": 2}, then=[
         {"event": "F", "where": [prop("x", "=", 1)], "within_hours": 120, "did": True},
         {"event": "G", "within_hours": 1, "did": False},
     ])),
    # comparisons, on traits and on properties alike
    ("trait('plan') = 'pro'", trait("plan", "=", "pro")),
    ('trait("plan") == "pro"', trait("plan", "=", "pro")),
    ("trait('plan') != 'pro'", trait("plan", "!=", "pro")),
    ("trait('n') < -2", trait("n", "<", -2)),
    ("trait('n') <= 1.5", trait("n", "<=", 1.5)),
    ("trait('n') >= 1e3", trait("n", ">=", 1000.0)),
    ("trait('n') > -0.25", trait("n", ">", -0.25)),
    ("trait('vip') = TRUE", trait("vip", "=", True)),
    ("trait('vip') = false", trait("vip", "=", False)),
    ("trait('vip') = 'true'", trait("vip", "=", "true")),
    ("trait('x') = null", trait("x", "not_exists")),
    ("trait('x') != NULL", trait("x", "exists")),
    ("trait('x') = literal(100)", trait("x", "=", 100)),
    ("trait('x').equals(5)", trait("x", "=", 5)),
    ("trait('x').differs('a')", trait("x", "!=", "a")),
    ("trait('x').greater_than(5)", trait("x", ">", 5)),
    ("trait('x').at_least(5)", trait("x", ">=", 5)),
    ("trait('x').less_than(5)", trait("x", "<", 5)),
    ("trait('x').at_most(5)", trait("x", "<=", 5)),
    ("trait('x').exists()", trait("x", "exists")),
    ("trait('x').absent()", trait("x", "not_exists")),
    ("trait('x').contains('shoes')", trait("x", "contains", "shoes")),
    ("trait('x').contains('shoes', 'shirts')",
     {"any": [trait("x", "contains", "shoes"), trait("x", "contains", "shirts")]}),
    ("trait('x').omits('shoes')", trait("x", "not_contains", "shoes")),
    ("trait('x').starts_with('to')", trait("x", "starts_with", "to")),
    ("trait('x').ends_with('al')", trait("x", "ends_with", "al")),
    ("trait('x').one_of('shoes', 'shirts', 3, true)", trait("x", "one_of", ["shoes", "shirts", 3, True])),
    ("trait('x').none_of('shoes')", trait("x", "none_of", ["shoes"])),
    ("trait('x').before_date(2023-12-07T18:50:00Z)", trait("x", "before_date", "2023-12-07T18:50:00Z")),
    ("trait('x').after_date('2023-12-07')", trait("x", "after_date", "2023-12-07")),
    ("trait('x').after_date(2023-12-07)", trait("x", "after_date", "2023-12-07")),
    ("trait('x') = 2024-01-31", trait("x", "=", "2024-01-31")),
    ("trait('x').within_last(7 days)", trait("x", "within_last_days", 7)),
    ("trait('x').before_last(48 hours)", trait("x", "before_last_days", 2)),
    (f"{E}.where(property('p').omits('x')).count() >= 1", event("E", where=[prop("p", "not_contains", "x")])),
    (f"{E}.where(property('p').one_of(1, 2)).count() >= 1", event("E", where=[prop("p", "one_of", [1, 2])])),
    (f"{E}.where(property('p') = null).count() >= 1", event("E", where=[prop("p", "not_exists")])),
    # audiences
    ("audience('vips')", audience("vips")),
    ("audience('vips') = true", audience("vips")),
    ("audience('vips') = false", audience("vips", False)),
    ("audience('vips') != true", audience("vips", False)),
    ("audience('vips') != false", audience("vips")),
    ("NOT audience('vips')", {"not": audience("vips")}),
    # strings, keywords, names
    ("trait('it\\'s') = \"say \\\"hi\\\"\"", trait("it's", "=", 'say "hi"')),
    ("trait('a\\\\b\\n\\t\\u00e9\\/') = ''", trait("a\\b\n\té/", "=", "")),
    ("trait('Straße 🎉') = 'ünï'", trait("Straße 🎉", "=", "ünï")),
    ("EVENT('E').WHERE(PROPERTY('a') = 1).WITHIN(7 DAYS).COUNT() >= 1",
     event("E", where=[prop("a", "=", 1)], window={"within_days": 7})),
    (f"{QA} and {QB} or not {QC}", {"any": [{"all": [A, B]}, {"not": C}]}),
    ("\n  trait('a')=1\tAND\ttrait('b')=1  \n", {"all": [A, B]}),
]  # fmt: skip


@pytest.mark.parametrize(("query", "tree"), PARSES)
def test_each_construct_parses_to_its_tree(query: str, tree: dict[str, Any]) -> None:
    assert parse_query(query) == tree
    assert parse_query(format_query(tree) or "") == tree


SEGMENT_DOCS = [  # the examples of src/api/public-api/query-language.md that are user audiences
    ("event('Shoes Bought').where( property('price') >= 100 ).within(7 days).count() >= 1",
     event("Shoes Bought", where=[prop("price", ">=", 100)], window={"within_days": 7})),
    ("NOT ( event('Shoes Bought').count() >= 1 AND trait('total_spend') > 200 )",
     {"not": {"all": [event("Shoes Bought"), trait("total_spend", ">", 200)]}}),
    ("event('Shoes Bought').where({property('price_usd') > 100}).count() >= 1",
     event("Shoes Bought", where=[prop("price_usd", ">", 100)])),
    ("event('Shoes Bought').where( \nevent('Shoes Returned').within(parent: 5 days).count() >= 1 \n)"
     ".within(30 days).count() >= 1",
     event("Shoes Bought", window={"within_days": 30}, then=[{"event": "Shoes Returned", "within_hours": 120,
                                                              "did": True}])),
]  # fmt: skip


@pytest.mark.parametrize(("query", "tree"), SEGMENT_DOCS)
def test_segment_documentation_examples(query: str, tree: dict[str, Any]) -> None:
    assert parse_query(query) == tree


# --- precedence -----------------------------------------------------------------------------

PRECEDENCE = [
    (f"{QA} AND {QB} AND {QC}", {"all": [A, B, C]}),
    (f"{QA} OR {QB} OR {QC}", {"any": [A, B, C]}),
    (f"{QA} OR {QB} AND {QC}", {"any": [A, {"all": [B, C]}]}),
    (f"{QA} AND {QB} OR {QC}", {"any": [{"all": [A, B]}, C]}),
    (f"{QA} AND {QB} OR {QC} AND {QD}", {"any": [{"all": [A, B]}, {"all": [C, D]}]}),
    (f"({QA} OR {QB}) AND {QC}", {"all": [{"any": [A, B]}, C]}),
    (f"{QA} AND ({QB} AND {QC})", {"all": [A, B, C]}),
    (f"(({QA}) OR ({QB} OR ({QC})))", {"any": [A, B, C]}),
    (f"NOT {QA} AND {QB}", {"all": [{"not": A}, B]}),
    (f"NOT ({QA} AND {QB})", {"not": {"all": [A, B]}}),
    (f"NOT NOT {QA}", {"not": {"not": A}}),
    (f"NOT ({QA} OR {QB}) OR NOT {QC}", {"any": [{"not": {"any": [A, B]}}, {"not": C}]}),
    (f"{QA} AND NOT ({QB} OR {QC} AND {QD})", {"all": [A, {"not": {"any": [B, {"all": [C, D]}]}}]}),
]


@pytest.mark.parametrize(("query", "tree"), PRECEDENCE)
def test_and_binds_tighter_than_or_and_nesting_flattens(query: str, tree: dict[str, Any]) -> None:
    assert parse_query(query) == tree


# --- errors ---------------------------------------------------------------------------------

ERRORS = [
    # syntax
    ("", 0, "expected a condition"),
    ("event('Email Opened'", 20, "expected ')' after the event name"),
    ("event(Email)", 6, "expected the event name (a quoted string)"),
    ("event 'E'", 6, "expected '(' after event"),
    ("event('E')", 10, "expected .where(…), .within(…), .between(…) or .count() after the event"),
    ("event('E').count()", 18, "expected a comparison after count()"),
    ("event('E').count() >= 1.5", 22, "expected a count: a whole number"),
    ("event('E').count() >= -1", 22, "expected a count: a whole number"),
    ("event('E').count(1) >= 1", 17, "count() takes no arguments"),
    ("event('E').within(7).count() >= 1", 19, "expected hours or days after the number"),
    ("event('E').within(7 weeks).count() >= 1", 20, "expected hours or days"),
    ("event('E').within(1.5 days).count() >= 1", 18, "expected a duration"),
    ("event('E').between(1 days 2 days).count() >= 1", 26, "expected ',' between the two durations"),
    ("event('E').within(7 days).within(3 days).count() >= 1", 26, "a second window"),
    ("event('E').foo().count() >= 1", 11, "unknown function foo(…) on an event"),
    ("trait('a')", 10, "expected a comparison after trait(…)"),
    ("trait('a') = ", 13, "expected a value"),
    ("trait('a') = 1 trait('b') = 2", 15, "expected AND, OR or the end of the query"),
    (f"({QA}", 15, "expected ')' or AND or OR"),
    (f"{QA})", 14, "expected AND, OR or the end of the query"),
    (f"{QA} AND", 18, "expected a condition"),
    (f"{QA} AND OR {QB}", 19, "expected a condition"),
    ("trait('a') = 'x", 13, "unterminated string"),
    ("trait('a\\q') = 1", 8, "unknown escape \\q"),
    ("trait('\\u12') = 1", 7, "expected 4 hex digits after \\u"),
    ("trait('a') = 1 & trait('b') = 1", 15, "unexpected character '&'"),
    ("trait('a') = 1e999", 13, "number out of range"),
    ("trait('a').foo(1)", 11, "unknown comparison foo(…)"),
    ("trait('a').omits('x', 'y')", 20, "this comparison takes one value"),
    ("trait('a').contains(1)", 20, "expected a quoted string"),
    ("trait('a').one_of('x', null)", 23, "null cannot be one of the values"),
    ("trait('a') > null", 11, "null compares only with = or !="),
    ("trait('a').before_date(7)", 23, "expected a date"),
    ("trait('a').exists(1)", 18, "expected ')' after the argument of exists(…)"),
    ("trait('a') = literal(literal(1))", 21, "expected a value"),
    ("audience('a') = 1", 16, "expected true or false"),
    ("foo('x')", 0, "unknown function foo(…)"),
    ("'x'", 0, "expected a condition"),
    ("(" * (MAX_NESTING + 1) + QA + ")" * (MAX_NESTING + 1), MAX_NESTING, f"nested more than {MAX_NESTING} deep"),
    ("NOT " * MAX_NESTING + QA, 4 * MAX_NESTING, f"nested more than {MAX_NESTING} deep"),
    # what the language has but the tree has not
    ("event('E').count() != 3", 19, "count() != N has no form in an audience"),
    ("event('E').count() < 0", 19, "count() < 0 is never true"),
    ("event('E').count().differs(3)", 19, "count() != N has no form"),
    ("event('E').within(36 hours).count() >= 1", 18, "36 hours is not a whole number of days"),
    ("trait('x').within_last(36 hours)", 23, "36 hours is not a whole number of days"),
    ("trait('x').within_next(7 days)", 11, "within_next(…) (dates in the future) is not supported"),
    ("trait('x').after_next(7 days)", 11, "after_next(…) (dates in the future) is not supported"),
    ("event('E').where(property('a') = 1 OR property('b') = 2).count() >= 1", 35, "OR inside where(…) is not"),
    ("event('E').where(NOT property('a') = 1).count() >= 1", 17, "NOT inside where(…) is not supported"),
    ("event('E').where(property('a').contains('x', 'y')).count() >= 1", 26, "contains(…) with several values"),
    ("event('E').where(property('a\\\\.b') = 1).count() >= 1", 26, "a property name with a literal '.'"),
    ("event('E').where(property('p') >= trait('avg_spend')).count() >= 1", 34, "a dynamic reference"),
    ("event('E').where(property(parent: 'p') = 1).count() >= 1", 26, "property(parent: …)"),
    ("event('E').where(trait('t') = 1).count() >= 1", 17, "trait(…) inside where(…) is not supported"),
    ("event('E').where(context('page.url') = 1).count() >= 1", 17, "context(…) inside where(…) is not supported"),
    ("event('E').sources({exclude: 'x'}).count() >= 1", 11, "sources(…) is not supported"),
    ("event('E').expires_after(1 hour).count() >= 1", 11, "expires_after(…) is not supported"),
    ("event('E').within(30 days).avg(property('spend')) > 1", 27, "avg(…) is a computed trait's reducer"),
    ("event('E').sum(property('spend')) > 1", 11, "sum(…) is a computed trait's reducer"),
    ("event('E').within(parent: 5 days).count() >= 1", 18, "parent: is only for a funnel step"),
    ("event('E').where(event('F').count() >= 1).count() >= 1", 17, "needs .within(parent: N hours)"),
    ("event('E').where(event('F').within(3 days).count() >= 1).count() >= 1", 35, "within(parent: N hours)"),
    ("event('E').where(event('F').within(parent: 1 day).count() >= 2).count() >= 1", 58, "done (count() >= 1) or not"),
    ("event('E').where(event('F').where(event('G').within(parent: 1 day).count() >= 1)"
     ".within(parent: 1 day).count() >= 1).count() >= 1", 34, "a funnel step cannot have steps of its own"),
    ("ALL ( event('E').count() >= 1 )", 0, "ALL (an account audience over its users) is not supported"),
    ("ANY event('E').count() >= 1", 0, "ANY (an account audience"),
    ("entity('orders').count() >= 1", 0, "entity(…) is not supported"),
    ("property('a') = 1", 0, "property(…) is only valid inside where(…)"),
]  # fmt: skip


@pytest.mark.parametrize(("query", "position", "message"), ERRORS)
def test_errors_name_the_position_and_what_was_expected(query: str, position: int, message: str) -> None:
    with pytest.raises(QueryParseError) as caught:
        parse_query(query)
    assert (caught.value.position, message in caught.value.message) == (position, True), caught.value.message
    assert str(caught.value).startswith(f"at {position}: ")
    assert isinstance(caught.value, ValueError)


# --- formatting -----------------------------------------------------------------------------

FORMATS = [
    ({"all": [A, {"any": [B, C]}]}, f"{QA} AND ({QB} OR {QC})"),
    ({"any": [A, {"all": [B, C]}]}, f"{QA} OR {QB} AND {QC}"),
    ({"not": {"any": [A, B]}}, f"NOT ({QA} OR {QB})"),
    ({"not": {"not": A}}, f"NOT NOT {QA}"),
    ({"all": [{"not": A}, {"any": [{"not": B}, C]}]}, f"NOT {QA} AND (NOT {QB} OR {QC})"),
    ({"all": [A]}, QA),  # one child: the child
    ({"all": [{"all": [A, B]}, C]}, f"{QA} AND {QB} AND {QC}"),  # flattened
    (event("E", where=[], window=None, count={"op": ">=", "value": 1}, then=[]), f"{E}.count() >= 1"),
    (event("E", where=[prop("a", "=", 1), prop("b", "exists")], window={"between_days": [7, 30]},
           count={"op": "<=", "value": 0}),
     f"{E}.where(property('a') = 1 AND property('b').exists()).between(7 days, 30 days).count() <= 0"),
    (event("E", then=[{"event": "F", "within_hours": 36, "did": True},
                      {"event": "G", "within_hours": 48, "did": False}]),
     f"{E}.where(event('F').within(parent: 36 hours).count() >= 1 AND event('G').within(parent: 2 days).count() = 0)"
     ".count() >= 1"),
    (trait("x", "not_exists"), "trait('x').absent()"),
    (trait("x", "exists", None), "trait('x').exists()"),
    (trait("x", "not_contains", "a"), "trait('x').omits('a')"),
    (trait("x", "one_of", ("a", 1, 2.5, False)), "trait('x').one_of('a', 1, 2.5, false)"),
    (trait("x", "within_last_days", 1), "trait('x').within_last(1 day)"),
    (trait("x", "before_last_days", 30), "trait('x').before_last(30 days)"),
    (trait("x", "after_date", "2026-05-01"), "trait('x').after_date('2026-05-01')"),
    (trait("it's", "=", "a\\b\n\x00\ud800"), "trait('it\\'s') = 'a\\\\b\\n\\u0000\\ud800'"),
    (audience("k", False), "audience('k') = false"),
]  # fmt: skip


@pytest.mark.parametrize(("tree", "query"), FORMATS)
def test_format_is_canonical(tree: dict[str, Any], query: str) -> None:
    assert format_query(tree) == query


INEXPRESSIBLE: list[Any] = [
    {"all": []},
    {"all": [A], "any": [B]},
    {"nothing": 1},
    [],
    "trait",
    event("E", count={"op": ">", "value": 1}),
    event("E", count={"op": ">=", "value": -1}),
    event("E", count={"op": ">=", "value": 1.5}),
    event("E", count={"op": ">=", "value": True}),
    event("E", count={}),
    event("E", window={"within_days": 1.5}),
    event("E", window={"within_hours": 3}),
    event("E", window={"between_days": [1]}),
    event("E", unknown=1),
    event("E", then=[{"event": "F", "within_hours": 1}]),
    event("E", then=[{"event": "F", "within_hours": 1, "did": True, "window": None}]),
    event("E", where=[prop("a\\.b", "=", 1)]),
    event("E", where=[{"trait": "a", "op": "=", "value": 1}]),
    event(3),  # type: ignore[arg-type]
    trait("x", "=", None),
    trait("x", "=", float("nan")),
    trait("x", "=", [1]),
    trait("x", "exists", 1),
    trait("x", "one_of", []),
    trait("x", "one_of", "a"),
    trait("x", "contains", 1),
    trait("x", "within_last_days", 1.5),
    trait("x", "=="),
    trait("x", "matches", "a"),
    {"trait": "x", "op": "=", "value": 1, "extra": 1},
    {"audience": "k"},
    {"audience": "k", "member": 1},
    {"not": A, "all": [B]},
    {"not": "x"},
]
_deep: dict[str, Any] = A
for _ in range(MAX_NESTING):
    _deep = {"not": _deep}
INEXPRESSIBLE.append(_deep)  # NOT … NOT a, one deeper than a query may nest


@pytest.mark.parametrize("tree", INEXPRESSIBLE)
def test_format_returns_none_for_what_has_no_form(tree: Any) -> None:
    assert format_query(tree) is None


def test_every_operator_formats_and_parses_back() -> None:
    values = {"one_of": [1, "a"], "none_of": [True], "within_last_days": 7, "before_last_days": 7}
    for op in OPERATORS:
        f = {"property": "a.b", "op": op} | ({} if op.endswith("exists") else {"value": values.get(op, "2026-01-01")})
        tree = event("E", where=[f])
        assert parse_query(format_query(tree) or "") == tree, op
        t = {"trait": "a.b", "op": op} | ({"value": f["value"]} if "value" in f else {})
        assert parse_query(format_query(t) or "") == t, op


# --- random trees (hypothesis) --------------------------------------------------------------

names = st.text(max_size=10)
paths = names.filter(lambda s: "\\." not in s)
scalars = st.one_of(st.text(max_size=8), st.integers(), st.floats(allow_nan=False, allow_infinity=False), st.booleans())
whole = st.integers(min_value=0, max_value=100_000)


def comparisons(key: str, subject: st.SearchStrategy[str]) -> st.SearchStrategy[dict[str, Any]]:
    def make(name: str, op: str, value: Any) -> dict[str, Any]:
        return {key: name, "op": op, "value": value}

    return st.one_of(
        st.builds(make, subject, st.sampled_from(["=", "!=", "<", "<=", ">", ">="]), scalars),
        st.builds(lambda n, op: {key: n, "op": op}, subject, st.sampled_from(["exists", "not_exists"])),
        st.builds(make, subject, st.sampled_from(["one_of", "none_of"]), st.lists(scalars, min_size=1, max_size=4)),
        st.builds(make, subject, st.sampled_from(["contains", "not_contains", "starts_with", "ends_with"]), names),
        st.builds(make, subject, st.sampled_from(["before_date", "after_date"]), names),
        st.builds(make, subject, st.sampled_from(["within_last_days", "before_last_days"]), whole),
    )


filters = comparisons("property", paths)
wheres = st.lists(filters, min_size=1, max_size=3)
steps = st.fixed_dictionaries({"event": names, "within_hours": whole, "did": st.booleans()}, optional={"where": wheres})
events = st.fixed_dictionaries(
    {"event": names},
    optional={
        "where": wheres,
        "window": st.one_of(
            st.builds(lambda n: {"within_days": n}, whole),
            st.builds(lambda a, b: {"between_days": [a, b]}, whole, whole),
        ),
        "count": st.builds(lambda op, n: {"op": op, "value": n}, st.sampled_from([">=", "=", "<="]), whole).filter(
            lambda c: c != {"op": ">=", "value": 1}
        ),
        "then": st.lists(steps, min_size=1, max_size=2),
    },
)
conditions = st.one_of(
    events, comparisons("trait", names), st.builds(lambda k, m: {"audience": k, "member": m}, names, st.booleans())
)


def canonical(node: dict[str, Any]) -> dict[str, Any]:
    """Junctions flattened, as a query reads: `a AND (b AND c)` is one AND of three."""
    for kind in ("all", "any"):
        if set(node) == {kind}:
            flat: list[dict[str, Any]] = []
            for child in map(canonical, node[kind]):
                flat.extend(child[kind] if set(child) == {kind} else [child])
            return {kind: flat}
    return {"not": canonical(node["not"])} if set(node) == {"not"} else node


trees = st.recursive(
    conditions,
    lambda kids: st.one_of(
        st.builds(lambda x: {"not": x}, kids),
        st.builds(lambda xs: {"all": xs}, st.lists(kids, min_size=2, max_size=4)),
        st.builds(lambda xs: {"any": xs}, st.lists(kids, min_size=2, max_size=4)),
    ),
    max_leaves=12,
).map(canonical)


@given(trees)
def test_random_trees_format_and_parse_back(tree: dict[str, Any]) -> None:
    query = format_query(tree)
    assert query is not None
    assert parse_query(query) == tree


@given(trees)
def test_every_prefix_of_a_query_parses_or_fails_with_a_position(tree: dict[str, Any]) -> None:
    query = format_query(tree) or ""
    for end in range(0, len(query), max(1, len(query) // 12)):
        try:
            parse_query(query[:end])
        except QueryParseError as e:
            assert 0 <= e.position <= end


FRAGMENTS = [
    "event", "trait", "audience", "property", "(", ")", "{", "}", "'x'", '"y', ".", ",", ":", "count", "where",
    "within", "between", "parent", "days", "hours", "AND", "OR", "NOT", ">=", "=", "<", "!=", "1", "-2.5", "true",
    "null", "exists", "contains", "one_of", "literal", "2026-01-01", "\\", "'\\u00", "within_last", "ALL", "&",
]  # fmt: skip


@given(st.lists(st.sampled_from(FRAGMENTS), max_size=30), st.sampled_from(["", " "]))
def test_any_text_parses_to_an_expressible_tree_or_fails_with_a_position(fragments: list[str], glue: str) -> None:
    query = glue.join(fragments)
    try:
        tree = parse_query(query)
    except QueryParseError as e:
        assert 0 <= e.position <= len(query)
        return
    assert parse_query(format_query(tree) or "") == tree


def test_nesting_is_bounded_alike_in_both_directions() -> None:
    deepest: dict[str, Any] = A  # NOT … NOT a, as deep as a query may nest
    for _ in range(MAX_NESTING - 1):
        deepest = {"not": deepest}
    assert parse_query(format_query(deepest) or "") == deepest
    alternating: dict[str, Any] = A  # a AND (b OR a AND (b OR …)): one parenthesis per two levels
    for i in range(2 * MAX_NESTING - 2):
        alternating = {"all": [A, alternating]} if i % 2 else {"any": [B, alternating]}
    query = format_query(alternating)
    assert query is not None and query.count("AND (") == MAX_NESTING - 1
    assert parse_query(query) == alternating
    assert format_query({"all": [A, {"any": [B, alternating]}]}) is None
    chain: dict[str, Any] = A  # one-child junctions, deeper than Python's stack
    for _ in range(5000):
        chain = {"all": [chain]}
    assert format_query(chain) is None
