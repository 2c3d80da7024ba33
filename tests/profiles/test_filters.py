"""The filter vocabulary: each operator's SQL, on the test's database, agrees with the plain
Python reference, on values of every type (numbers, numeric strings, booleans, dates, lists,
missing, null); and for random filters and documents too (hypothesis)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from django.db import connection
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from profiles.query.dialects import dialect_named
from profiles.query.filters import OPERATORS, Filter, QueryError, compile_filter, filter_matches, parse_filter
from profiles.query.sql import fmt, join, value

pytestmark = pytest.mark.django_db
NOW = datetime(2026, 11, 15, 12, 0, tzinfo=UTC)

DOCS: list[Any] = [
    {}, {"v": None}, {"v": 42}, {"v": 42.5}, {"v": "42"}, {"v": " 1.5e3 "}, {"v": "42abc"}, {"v": -3},
    {"v": True}, {"v": False}, {"v": "true"}, {"v": "FALSE"}, {"v": "Pricing Page"}, {"v": "pricing"},
    {"v": "Straße"}, {"v": ""}, {"v": ["Red", "blue", 3]}, {"v": {"x": 1}}, {"v": "2026-11-10"},
    {"v": "2026-11-10T08:30:00Z"}, {"v": "2026-11-10T08:30:00+02:00"}, {"v": "2026-02-31"}, {"v": "2025-01-01 10:00"},
    {"v": "2026-11-16T00:00:00Z"}, {"v": "not a date"}, {"v": 1e20}, {"v": "50%_off"},
]  # fmt: skip


def sql_matches(f: Filter, docs: list[Any]) -> list[int]:
    """Indexes of `docs` the compiled filter keeps, run on the test database."""
    d = dialect_named(connection.vendor)
    cast = "::jsonb" if d.name == "postgresql" else ""
    rows = join([fmt(f"SELECT {i} AS i, {{doc}}{cast} AS doc", doc=value(orjson.dumps(doc).decode()))
                 for i, doc in enumerate(docs)], " UNION ALL ")  # fmt: skip
    condition = compile_filter(f, d.subject("t.doc", f.path), d, now=NOW)
    query = fmt("SELECT t.i FROM ({rows}) AS t WHERE {c} ORDER BY t.i", rows=rows, c=condition)
    with connection.cursor() as cursor:
        cursor.execute(query.text, query.params)
        return [row[0] for row in cursor.fetchall()]


def python_matches(f: Filter, docs: list[Any]) -> list[int]:
    return [i for i, doc in enumerate(docs) if filter_matches(f, doc, now=NOW)]


CASES = [
    ("=", 42, [2, 4]), ("=", "42", [4]), ("=", True, [8, 10]), ("=", False, [9, 11]), ("=", "pricing", [13]),
    ("!=", 42, [0, 1, 3, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26]),
    (">", 40, [2, 3, 4, 5, 25]), ("<=", -3, [7]), (">=", "pricing", [10, 13]), ("<", "2026-11", [5, 15, 21, 22]),
    ("one_of", [42, "pricing", False], [2, 4, 9, 11, 13]),
    ("contains", "PRICING", [12, 13]), ("contains", "blu", [16]), ("starts_with", "pri", [12, 13]),
    ("ends_with", "page", [12]), ("contains", "%_", [26]), ("contains", "STRASSE", []),
    ("not_contains", "pricing", [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25,
                                 26]),
    ("exists", None, [i for i in range(2, len(DOCS))]), ("not_exists", None, [0, 1]),
    ("before_date", "2026-11-10T07:00:00Z", [18, 20, 22]), ("after_date", "2026-11-10", [19, 20, 23]),
    ("within_last_days", 7, [18, 19, 20]), ("before_last_days", 30, [22]),
]  # fmt: skip


@pytest.mark.parametrize(("op", "v", "expected"), CASES)
def test_each_operator_in_sql_agrees_with_python(op, v, expected):
    f = parse_filter({"property": "v", "op": op, "value": v} if op not in ("exists", "not_exists")
                     else {"property": "v", "op": op}, where="where[0]")  # fmt: skip
    assert python_matches(f, DOCS) == expected
    assert sql_matches(f, DOCS) == expected


def test_dotted_paths_reach_nested_properties():
    docs = [{"product": {"category": "shoes"}}, {"product": "shoes"}, {"product.category": "shoes"}]
    f = parse_filter({"property": "product.category", "op": "=", "value": "shoes"}, where="w")
    assert sql_matches(f, docs) == python_matches(f, docs) == [0]


@pytest.mark.parametrize(
    ("data", "path", "message"),
    [
        ({"property": "x", "op": "equals", "value": 1}, "where[2].op", "Unknown operator"),
        ({"property": "x", "op": ">", "value": True}, "where[2].value", "number or a string"),
        ({"property": "x", "op": "one_of", "value": []}, "where[2].value", "non-empty list"),
        ({"property": "x", "op": "before_date", "value": "yesterday"}, "where[2].value", "ISO 8601"),
        ({"property": "x", "op": "within_last_days", "value": -1}, "where[2].value", "number of days"),
        ({"property": "", "op": "=", "value": 1}, "where[2].property", "required"),
        ({"property": "x", "op": "exists", "value": 3}, "where[2].value", "no value"),
        ({"property": "x", "op": "=", "value": 1, "extra": 1}, "where[2].extra", "Unknown field"),
    ],
)
def test_bad_filters_name_the_field(data, path, message):
    with pytest.raises(QueryError) as caught:
        parse_filter(data, where="where[2]")
    assert caught.value.path == path and message in caught.value.message


scalars = st.one_of(
    st.integers(-5, 50), st.sampled_from([0.5, 42.0, -3.25]), st.booleans(),
    st.sampled_from(["42", "abc", "Abc", "true", "2026-11-10", "2026-11-14T10:00:00Z", "", "a%b", "x_y"]),
)  # fmt: skip
values = st.one_of(st.none(), scalars, st.lists(scalars, max_size=3))
documents = st.one_of(st.just({}), st.builds(lambda v: {"v": v}, values))


def filters():
    def build(op: str, pick: Any) -> dict[str, Any]:
        data = {"property": "v", "op": op}
        return data if op in ("exists", "not_exists") else {**data, "value": pick}

    picks = {
        "=": scalars, "!=": scalars, "<": st.one_of(st.integers(-5, 50), st.sampled_from(["A", "b", "42"])),
        "<=": st.integers(-5, 50), ">": st.integers(-5, 50), ">=": st.sampled_from(["a", "Z", "2026"]),
        "one_of": st.lists(scalars, min_size=1, max_size=3), "none_of": st.lists(scalars, min_size=1, max_size=3),
        "contains": st.sampled_from(["a", "B", "%", "_", "42"]), "not_contains": st.sampled_from(["a", "b"]),
        "starts_with": st.sampled_from(["a", "A", "2"]), "ends_with": st.sampled_from(["c", "0Z"]),
        "exists": st.none(), "not_exists": st.none(),
        "before_date": st.sampled_from(["2026-11-12", "2026-11-10T00:00:00Z"]),
        "after_date": st.sampled_from(["2026-11-01", "2026-11-14T12:00:00+01:00"]),
        "within_last_days": st.sampled_from([1, 7, 30]), "before_last_days": st.sampled_from([2, 10]),
    }  # fmt: skip
    assert set(picks) == set(OPERATORS)
    return st.sampled_from(sorted(picks)).flatmap(lambda op: picks[op].map(lambda pick: build(op, pick)))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=filters(), docs=st.lists(documents, min_size=1, max_size=8))
def test_random_filters_agree_with_python(data, docs):
    f = parse_filter(data, where="w")
    assert sql_matches(f, docs) == python_matches(f, docs)
