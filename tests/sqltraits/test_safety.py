"""A SQL trait only reads. A query that writes, drops, creates, locks or holds several
statements is refused with a clear error in its run, and the data is unchanged: refused up
front by the check, and, when the check is bypassed, by the read-only connection itself
(PostgreSQL's READ ONLY transaction, SQLite's mode=ro), on both databases."""

from __future__ import annotations

import pytest
from django.db import connection

from profiles.models import Event
from sqltraits.models import SqlTrait
from sqltraits.warehouse import WarehouseError, warehouse_rows
from tests.conftest import ON_POSTGRES

pytestmark = pytest.mark.django_db(transaction=True)

HARMFUL = [
    "DELETE FROM tickets",
    "UPDATE tickets SET status = 'gone'",
    "DROP TABLE tickets",
    "CREATE TABLE sneaky (user_id text, x int)",
    "INSERT INTO tickets (id, user_id) VALUES (99, 'intruder')",
    "SELECT 1; DELETE FROM tickets",
    "SELECT user_id, status FROM tickets; DROP TABLE tickets",
    "WITH gone AS (DELETE FROM tickets RETURNING user_id) SELECT user_id, 1 AS x FROM gone",
    "SELECT user_id, status FROM tickets FOR UPDATE",
    "SELECT user_id, status INTO sneaky FROM tickets",
]


def tables() -> set[str]:
    return set(connection.introspection.table_names())


@pytest.fixture
def filled(tickets):
    tickets.add(1, "u1", "open")
    tickets.add(2, "u2", "closed")
    return tickets


@pytest.mark.parametrize("query", HARMFUL)
def test_a_harmful_query_fails_its_run_and_changes_nothing(filled, define, run, query):
    before, names = filled.snapshot(), tables()
    trait = define("SELECT user_id, status FROM tickets")
    SqlTrait.objects.filter(pk=trait.pk).update(query=query)  # as if stored before a stricter check
    done = run(trait)
    assert done.status == "failed"
    assert done.error.startswith("query: ") and (
        "A SQL trait only reads" in done.error or "One statement only" in done.error
    )
    assert filled.snapshot() == before and tables() == names
    assert not Event.objects.exists()


@pytest.mark.parametrize("query", HARMFUL)
def test_the_read_only_connection_refuses_it_even_unchecked(filled, query):
    """The real guard: the check bypassed, the database itself refuses."""
    before, names = filled.snapshot(), tables()
    with pytest.raises(WarehouseError) as failed, warehouse_rows(query=query) as result:
        list(result.rows)
    assert str(failed.value).startswith("The query failed: ")
    assert filled.snapshot() == before and tables() == names


@pytest.mark.postgres
def test_a_function_that_writes_is_stopped_by_the_read_only_transaction(filled, define, run):
    """What no check of the text can see: a SELECT calling a function that deletes."""
    filled.execute("CREATE FUNCTION wipe() RETURNS int LANGUAGE sql AS 'DELETE FROM tickets RETURNING 1'")
    try:
        before = filled.snapshot()
        done = run(define("SELECT user_id, wipe() AS x FROM tickets"))
        assert done.status == "failed" and "read-only transaction" in done.error
        assert filled.snapshot() == before
    finally:
        filled.execute("DROP FUNCTION wipe()")


def test_the_connection_itself_is_read_only(filled):
    """PostgreSQL: a read-only transaction in a session read-only by default (even a COMMIT
    slipped past, which the extended protocol refuses anyway, would start another read-only
    transaction). SQLite: the file opened with mode=ro, and query_only."""
    if ON_POSTGRES:
        query = ("SELECT current_setting('default_transaction_read_only') AS d, "
                 "current_setting('transaction_read_only') AS t")  # fmt: skip
        expected = [("on", "on")]
    else:
        query, expected = "PRAGMA query_only", [(1,)]
    with warehouse_rows(query=query) as result:
        assert list(result.rows) == expected
