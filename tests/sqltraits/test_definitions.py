"""The pure parts of SQL traits: the first check of a query, the columns of a result, each
row's limits with its reason, and which identify calls a result becomes. No database."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sqltraits.definitions import DefinitionError, definition_parse, query_check
from sqltraits.results import (
    MAX_TRAIT_COLUMNS,
    ResultError,
    Rows,
    changes_plan,
    columns_check,
    identify_message,
    rows_read,
)


@pytest.mark.parametrize(
    "query",
    [
        "SELECT user_id, count(*) AS open_tickets FROM tickets GROUP BY user_id",
        "select 1 as x;",
        "WITH t AS (SELECT 1 AS x) SELECT * FROM t",
        "(SELECT 1)",
        "SELECT 'a; DELETE FROM t' AS x, \"update\" FROM t -- ; DROP TABLE t",
        "SELECT $$; DELETE FROM t$$ AS x",
        "SELECT $q$ ; $$ ; $q$ AS x",
        "SELECT 1 /* a /* nested ; */ still */ AS x",
        "SELECT e'it\\'s; delete' AS x",
        "SELECT comment, cluster, last_update, deleted_at FROM t",
        "SELECT pg_sleep(1)",
    ],
)
def test_a_single_read_is_accepted(query):
    assert query_check(query) == query.strip().rstrip(";")


@pytest.mark.parametrize(
    ("query", "says"),
    [
        ("SELECT 1; DELETE FROM tickets", "One statement only"),
        ("SELECT 1; SELECT 2", "One statement only"),
        ("DELETE FROM tickets", "not DELETE"),
        ("UPDATE tickets SET status = 'x'", "not UPDATE"),
        ("DROP TABLE tickets", "not DROP"),
        ("CREATE TABLE x (a int)", "not CREATE"),
        ("INSERT INTO tickets VALUES (1)", "not INSERT"),
        ("TRUNCATE tickets", "not TRUNCATE"),
        ("LOCK TABLE tickets", "not LOCK"),
        ("PRAGMA writable_schema = 1", "not PRAGMA"),
        ("ATTACH DATABASE 'x' AS y", "not ATTACH"),
        ("WITH x AS (DELETE FROM tickets RETURNING *) SELECT * FROM x", "DELETE is refused"),
        ("WITH x AS (SELECT 1) UPDATE tickets SET status = 'x'", "UPDATE is refused"),
        ("SELECT * FROM tickets FOR UPDATE", "locking clause"),
        ("SELECT * FROM tickets FOR NO KEY UPDATE", "locking clause"),
        ("SELECT * FROM tickets FOR SHARE", "locking clause"),
        ("SELECT * INTO copy FROM tickets", "INTO is refused"),
        ("SELECT pg_advisory_lock(1)", "pg_advisory_lock() is refused"),
        ("SELECT PG_TERMINATE_BACKEND(42)", "pg_terminate_backend() is refused"),
        ("SELECT set_config('statement_timeout', '0', false)", "set_config() is refused"),
        ("SELECT 'never closed", "never closed"),
        ("SELECT 1 /* never closed", "never closed"),
        ("SELECT $$ never closed", "never closed"),
        ("", "A SELECT query"),
        (";", "A SELECT query"),
        ("-- just a comment", "A SELECT query"),
    ],
)
def test_what_is_not_a_single_read_is_refused_naming_why(query, says):
    with pytest.raises(DefinitionError) as refused:
        query_check(query)
    assert refused.value.path == "query" and says in refused.value.message


@given(st.text(max_size=60))
def test_the_check_never_crashes(text):
    try:
        query_check(text)
    except DefinitionError as exc:
        assert exc.path == "query"


def test_a_definition_has_defaults_and_names_a_bad_field():
    defn = definition_parse({"key": "open_tickets", "query": "SELECT 1"})
    assert (defn.name, defn.identifier, defn.every_hours, defn.enabled) == ("Open tickets", "user_id", 12, True)
    for bad, field in [({"key": "Open"}, "key"), ({"identifier": "phone"}, "identifier"),
                       ({"every_hours": 0}, "every_hours"), ({"every_hours": "12"}, "every_hours"),
                       ({"every_hours": True}, "every_hours"), ({"enabled": "yes"}, "enabled"),
                       ({"name": 5}, "name"), ({"query": "DELETE FROM t"}, "query")]:  # fmt: skip
        with pytest.raises(DefinitionError) as refused:
            definition_parse({"key": "open_tickets", "query": "SELECT 1", **bad})
        assert refused.value.path == field


# --- Columns --------------------------------------------------------------------------------------


def test_the_identifier_and_one_to_25_trait_columns():
    cols = columns_check(["User_ID", "open_tickets", "email"], "user_id")
    assert cols.identifier == 0 and cols.traits == ((1, "open_tickets"), (2, "email"))
    assert columns_check(["email", *[f"t{i}" for i in range(MAX_TRAIT_COLUMNS)]], "email").identifier == 0


@pytest.mark.parametrize(
    ("columns", "identifier", "says"),
    [
        (["email", "x"], "user_id", "no 'user_id' column"),
        (["user_id"], "user_id", "no trait column"),
        (["user_id", *[f"t{i}" for i in range(26)]], "user_id", "26 trait columns; at most 25"),
        (["user_id", "anonymous_id", "x"], "user_id", "'anonymous_id' column besides 'user_id'"),
        (["email", "user_id", "x"], "email", "'user_id' column besides 'email'"),
        (["user_id", "x", "x"], "user_id", "several columns named 'x'"),
    ],
)
def test_a_result_with_the_wrong_columns_fails(columns, identifier, says):
    with pytest.raises(ResultError, match=says):
        columns_check(columns, identifier)


# --- Rows -----------------------------------------------------------------------------------------


def read(rows, identifier="user_id", columns=("user_id", "a")):
    return rows_read(rows, columns_check(list(columns), identifier), identifier)


def test_values_that_are_strings_numbers_or_booleans_are_kept():
    got = read([("u1", "x"), (2, 1.5), ("u3", True), ("u4", None), ("u5", Decimal("7")), ("u6", Decimal("0.25")),
                (uuid.UUID(int=1), "uuid id"), ("u7", 2**53 - 1)])  # fmt: skip
    assert got.traits == {"u1": {"a": "x"}, "2": {"a": 1.5}, "u3": {"a": True}, "u4": {"a": None}, "u5": {"a": 7},
                          "u6": {"a": 0.25}, str(uuid.UUID(int=1)): {"a": "uuid id"},
                          "u7": {"a": 2**53 - 1}}  # fmt: skip
    assert got.report.total == 0 and got.count == 8


def test_each_row_that_breaks_a_limit_is_skipped_with_its_reason():
    got = read([
        (None, "a"), ("", "b"), (1.5, "c"), ("x" * 501, "d"),
        ("dup", 1), ("ok", 1), ("dup", 2), ("dup", 3),
        ("date", dt.date(2026, 1, 1)), ("array", [1, 2]), ("json", {"a": 1}), ("bytes", b"\x00"),
        ("big", 2**53), ("nan", float("nan")), ("nul", "a\x00b"), ("large", "x" * 17_000),
    ])  # fmt: skip
    assert list(got.traits) == ["ok"]
    assert got.report.skipped == {
        "null_identifier": 2, "identifier_type": 1, "identifier_too_long": 1, "duplicate_identifier": 3,
        "unsupported_type": 4, "number_out_of_range": 2, "invalid_characters": 1, "row_too_large": 1,
    }  # fmt: skip
    report = got.report.as_json()
    assert report["unsupported_type"]["examples"][0] == "user_id 'date': a: a date"
    assert "cast dates" in report["unsupported_type"]["message"]
    assert report["duplicate_identifier"]["examples"] == ["user_id 'dup': 3 rows"]
    assert report["null_identifier"]["examples"] == ["row 1: null", "row 2: null"]
    # People named by a skipped row are in the result: they are not "missing" (nulled).
    assert {"dup", "date", "large"} <= got.present


def test_emails_are_identifiers_as_identity_resolution_keeps_them():
    got = read([(" Ada@Example.COM ", 1), ("ada@example.com", 2)], "email", ("email", "a"))
    assert got.traits == {} and got.report.skipped == {"duplicate_identifier": 2}


# --- What is sent -------------------------------------------------------------------------------


def plan(traits, previous, present=None):
    rows = Rows(traits=traits, present=set(traits) | set(present or ()))
    sends, forget = changes_plan(rows, previous)
    return {s.identifier: (s.traits, s.changed, s.state) for s in sends}, forget


def test_only_changed_people_are_sent_with_all_their_traits():
    sends, _ = plan({"u1": {"a": 1, "b": "x"}, "u2": {"a": 2, "b": "y"}}, {"u1": {"a": 1, "b": "x"}, "u2": {"a": 2}})
    assert sends == {"u2": ({"a": 2, "b": "y"}, 1, {"a": 2, "b": "y"})}


def test_a_value_of_another_type_is_a_change():
    sends, _ = plan({"u1": {"a": 1}, "u2": {"a": True}}, {"u1": {"a": 1.0}, "u2": {"a": 1}})
    assert set(sends) == {"u1", "u2"}


def test_a_column_gone_from_the_query_is_nulled():
    sends, _ = plan({"u1": {"a": 1}}, {"u1": {"a": 1, "b": 2}})
    assert sends == {"u1": ({"b": None, "a": 1}, 1, {"a": 1})}


def test_someone_missing_from_the_result_gets_nulls_and_is_forgotten():
    sends, forget = plan({}, {"gone": {"a": 1, "b": None}, "empty": {"b": None}, "skipped": {"a": 1}}, {"skipped"})
    assert sends == {"gone": ({"a": None, "b": None}, 1, None)} and forget == ["empty"]


def test_the_identify_call_names_the_person_by_the_identifier():
    (send,) = changes_plan(Rows(traits={"ada@example.com": {"a": 1}}, present={"ada@example.com"}), {})[0]
    at = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)
    message = identify_message(send=send, identifier="email", key="k", run_id=7, timestamp=at)
    assert message["traits"] == {"email": "ada@example.com", "a": 1} and "userId" not in message
    assert message["messageId"].startswith("sql-7-") and len(message["messageId"]) <= 100
    assert (
        identify_message(send=send, identifier="user_id", key="k", run_id=7, timestamp=at)["userId"] == send.identifier
    )
    again = identify_message(send=send, identifier="email", key="k", run_id=7, timestamp=at)
    assert again["messageId"] == message["messageId"]  # a retried chunk is a duplicate to ingest
