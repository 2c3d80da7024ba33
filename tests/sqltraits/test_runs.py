"""SQL traits run end to end on the CDP's own database (PostgreSQL or SQLite): the query on
its read-only connection, identify calls through ingest and the pipeline, profiles made or
changed, only changes sent, nulls for people who left the result, every run recorded with
its report. Transactional: the run's own connection sees only what is committed."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test import override_settings

from ingest.models import Source
from profiles.models import Event, Identity
from profiles.services.tokens import access_token_create
from sqltraits.models import SqlTrait, SqlTraitRun, SqlTraitValue
from sqltraits.runner import sql_trait_run
from sqltraits.services import sql_trait_run_request
from tests.conftest import ON_POSTGRES, basic_auth
from tests.sqltraits.conftest import traits_of

pytestmark = pytest.mark.django_db(transaction=True)


def sent_by(trait: SqlTrait) -> int:
    return Event.objects.filter(source_id=trait.source_id).count()


def test_a_run_makes_unknown_people_profiles_with_the_query_as_their_source(tickets, define, run, client):
    tickets.add(1, "u1", "open", 2)
    tickets.add(2, "u1", "open", 3)
    tickets.add(3, "u2", "closed", 1)
    trait = define()
    done = run(trait)
    assert (done.status, done.error) == ("succeeded", "")
    assert (done.rows, done.people_sent, done.values_changed, done.people_nulled, done.skipped) == (2, 2, 4, 0, 0)
    assert done.duration_ms is not None and done.started_at and done.finished_at
    assert traits_of("user_id", "u1") == {"open_tickets": 2, "top_priority": 3}
    assert traits_of("user_id", "u2") == {"open_tickets": 0, "top_priority": 1}
    # Through the normal identify path, from the definition's own source.
    events = Event.objects.filter(source_id=trait.source_id)
    assert sorted(e.user_id for e in events) == ["u1", "u2"] and {e.type for e in events} == {"identify"}
    assert Source.objects.get(pk=trait.source_id).kind == "sql"
    # What a Profile API user sees.
    token = access_token_create(name="reader")[1]
    answer = client.get("/v1/spaces/default/collections/users/profiles/user_id:u1/traits",
                        headers={"Authorization": basic_auth(token)})  # fmt: skip
    assert answer.json()["traits"] == {"open_tickets": 2, "top_priority": 3}
    trait.refresh_from_db()
    assert (trait.last_status, trait.last_error) == ("succeeded", "")


def test_only_people_whose_values_changed_are_sent_again(tickets, define, run):
    tickets.add(1, "u1", "open")
    tickets.add(2, "u2", "closed")
    trait = define()
    run(trait)
    assert sent_by(trait) == 2
    again = run(trait)
    assert (again.status, again.rows, again.people_sent, again.values_changed) == ("succeeded", 2, 0, 0)
    assert sent_by(trait) == 2  # nothing new in the event log
    tickets.execute("UPDATE tickets SET status = 'open' WHERE id = 2")
    changed = run(trait)
    assert (changed.people_sent, changed.values_changed) == (1, 1)
    assert sent_by(trait) == 3
    assert traits_of("user_id", "u2") == {"open_tickets": 1, "top_priority": 1}


def test_someone_missing_from_the_next_result_gets_the_traits_nulled(tickets, define, run, send):
    send({"type": "identify", "userId": "u2", "traits": {"plan": "pro"}})  # a trait of their own
    tickets.add(1, "u1", "open")
    tickets.add(2, "u2", "open")
    trait = define("SELECT user_id, COUNT(*) AS open_tickets FROM tickets WHERE status = 'open' GROUP BY user_id")
    run(trait)
    assert traits_of("user_id", "u2") == {"plan": "pro", "open_tickets": 1}
    tickets.execute("UPDATE tickets SET status = 'closed' WHERE id = 2")
    done = run(trait)
    assert (done.people_sent, done.people_nulled, done.values_changed) == (0, 1, 1)
    assert traits_of("user_id", "u2") == {"plan": "pro"}  # only that query's traits go
    assert traits_of("user_id", "u1") == {"open_tickets": 1}
    assert list(SqlTraitValue.objects.values_list("identifier", flat=True)) == ["u1"]
    assert run(trait).people_nulled == 0  # said once


def test_rows_that_break_a_limit_are_skipped_and_reported(tickets, define, run):
    tickets.add(1, "u1", subject="fine")
    tickets.add(2, None, subject="no one")
    tickets.add(3, "twice", subject="a")
    tickets.add(4, "twice", subject="b")
    tickets.add(5, "big", subject="x" * 17_000)
    tickets.add(6, "", subject="empty id")
    trait = define("SELECT user_id, subject FROM tickets ORDER BY id", key="subject")
    done = run(trait)
    assert (done.status, done.rows, done.people_sent, done.skipped) == ("succeeded", 6, 1, 5)
    reasons = done.skipped_reasons
    assert {r: v["count"] for r, v in reasons.items()} == {"null_identifier": 2, "duplicate_identifier": 2,
                                                           "row_too_large": 1}  # fmt: skip
    assert reasons["duplicate_identifier"]["examples"] == ["user_id 'twice': 2 rows"]
    assert "16 KB" in reasons["row_too_large"]["message"]
    assert traits_of("user_id", "u1") == {"subject": "fine"}
    assert traits_of("user_id", "twice") is None and traits_of("user_id", "big") is None


@pytest.mark.parametrize(
    ("query", "error"),
    [
        ("SELECT id, status FROM tickets", "no 'user_id' column"),
        ("SELECT user_id FROM tickets", "no trait column"),
        ("SELECT user_id, " + ", ".join(f"priority AS p{i}" for i in range(26)) + " FROM tickets", "at most 25"),
        ("SELECT user_id, no_such_column FROM tickets", "The query failed"),
    ],
)
def test_a_result_with_the_wrong_columns_fails_the_run_and_sends_nothing(tickets, define, run, query, error):
    tickets.add(1, "u1")
    trait = define(query)
    done = run(trait)
    assert done.status == "failed" and error in done.error
    assert sent_by(trait) == 0 and not SqlTraitValue.objects.exists()
    trait.refresh_from_db()
    assert trait.last_status == "failed" and error in trait.last_error


def test_email_and_anonymous_id_name_people_too(tickets, define, run):
    tickets.add(1, None, email="Ada@Example.com")
    tickets.add(2, "anon-1", email=None)
    by_email = define("SELECT email, COUNT(*) AS tickets FROM tickets WHERE email IS NOT NULL GROUP BY email",
                      key="by_email", identifier="email")  # fmt: skip
    by_device = define("SELECT user_id AS anonymous_id, COUNT(*) AS tickets FROM tickets WHERE email IS NULL "
                       "GROUP BY user_id", key="by_device", identifier="anonymous_id")  # fmt: skip
    assert run(by_email).people_sent == 1 and run(by_device).people_sent == 1
    assert traits_of("email", "ada@example.com") == {"email": "ada@example.com", "tickets": 1}
    assert traits_of("anonymous_id", "anon-1") == {"tickets": 1}


@pytest.mark.postgres
def test_a_boolean_column_is_a_boolean_trait(tickets, define, run):
    tickets.add(1, "u1", "open")
    tickets.add(2, "u2", "closed")
    trait = define("SELECT user_id, bool_or(status = 'open') AS has_open_ticket FROM tickets GROUP BY user_id",
                   key="has_open_ticket")  # fmt: skip
    run(trait)
    assert traits_of("user_id", "u1") == {"has_open_ticket": True}
    assert traits_of("user_id", "u2") == {"has_open_ticket": False}


def test_a_disabled_source_fails_the_run_and_nothing_is_remembered(tickets, define, run):
    tickets.add(1, "u1")
    trait = define()
    Source.objects.filter(pk=trait.source_id).update(enabled=False)
    done = run(trait)
    assert done.status == "failed" and "is the source 'SQL trait: open_tickets' disabled?" in done.error
    assert not SqlTraitValue.objects.exists()


def test_a_query_past_the_timeout_is_stopped(tickets, define, run):
    endless = ("WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n) "
               "SELECT 'u1' AS user_id, COUNT(*) AS forever FROM n")  # fmt: skip
    trait = define(endless)
    with override_settings(SQL_TRAITS_STATEMENT_TIMEOUT=0.5):
        done = run(trait)
    assert done.status == "failed" and "ran over 0.5 s (SQL_TRAITS_STATEMENT_TIMEOUT)" in done.error
    assert done.duration_ms < 10_000


def test_too_many_rows_fail_the_run(tickets, define, run):
    for i in range(3):
        tickets.add(i, f"u{i}")
    with override_settings(SQL_TRAITS_MAX_ROWS=2):
        done = run(define())
    assert done.status == "failed" and "more than 2 rows (SQL_TRAITS_MAX_ROWS)" in done.error
    assert not Event.objects.exists()


def test_another_database_can_be_read(tickets, define, run, tmp_path):
    """SQL_TRAITS_DATABASE_URL: here the same database under its URL on PostgreSQL, a file of
    its own on SQLite."""
    if ON_POSTGRES:
        own = connection.settings_dict
        url = f"postgres://{own['USER']}:{own['PASSWORD'] or ''}@{own['HOST']}:{own['PORT'] or 5432}/{own['NAME']}"
        tickets.add(1, "u1")
    else:
        import sqlite3

        path = tmp_path / "warehouse.sqlite3"
        with sqlite3.connect(path) as other:
            other.execute("CREATE TABLE tickets (id integer, user_id text, status text, priority integer)")
            other.execute("INSERT INTO tickets VALUES (1, 'u1', 'open', 1)")
        url = f"sqlite:///{path}"
    with override_settings(SQL_TRAITS_DATABASE_URL=url):
        done = run(define())
    assert done.status == "succeeded", done.error
    assert traits_of("user_id", "u1") == {"open_tickets": 1, "top_priority": 1}
    with override_settings(SQL_TRAITS_DATABASE_URL="mysql://nope/x"):
        assert "must be a postgres:// or sqlite:/// URL" in run(define(key="other")).error


def test_two_runs_of_one_definition_never_overlap(tickets, define):
    tickets.add(1, "u1")
    trait = define()
    queued, new = sql_trait_run_request(trait_id=trait.pk, trigger="api", enqueue=False)
    again, new_again = sql_trait_run_request(trait_id=trait.pk, trigger="admin", enqueue=False)
    assert new and not new_again and again.pk == queued.pk  # the one already queued
    assert sql_trait_run(run_id=queued.pk).status == "succeeded"
    assert sql_trait_run(run_id=queued.pk) is None  # a task delivered twice runs it once
    assert Event.objects.count() == 1
    assert SqlTraitRun.objects.get(pk=queued.pk).people_sent == 1
    assert sql_trait_run_request(trait_id=trait.pk, trigger="api", enqueue=False)[1]  # done: a new one may start


def test_the_identifier_of_someone_already_known_finds_their_profile(tickets, define, run, send):
    send({"type": "identify", "userId": "u1", "anonymousId": "a1", "traits": {"name": "Ada"}})
    tickets.add(1, "u1")
    run(define())
    identity = Identity.objects.get(kind="user_id", value="u1")
    assert Identity.objects.get(kind="anonymous_id", value="a1").profile_id == identity.profile_id
    assert traits_of("user_id", "u1") == {"name": "Ada", "open_tickets": 1, "top_priority": 1}


def test_the_readme_example_has_an_open_support_ticket(tickets, define, run):
    """README, "SQL traits": the PostgreSQL query, or its SQLite variant."""
    tickets.add(1, None, "open", email="Ada@Example.com")
    tickets.add(2, None, "closed", email="ada@example.com")
    tickets.add(3, None, "closed", email="grace@example.com")
    tickets.add(4, None, "open", email=None)  # no one: skipped
    if ON_POSTGRES:
        query = (
            "SELECT lower(email) AS email, bool_or(status = 'open') AS has_open_ticket, "
            "count(*) FILTER (WHERE status = 'open') AS open_tickets FROM tickets GROUP BY lower(email)"
        )
        yes, no = True, False
    else:
        query = (
            "SELECT lower(email) AS email, MAX(status = 'open') AS has_open_ticket, "
            "SUM(status = 'open') AS open_tickets FROM tickets GROUP BY lower(email)"
        )
        yes, no = 1, 0
    done = run(define(query, key="has_open_ticket", identifier="email"))
    assert (done.status, done.people_sent, done.skipped) == ("succeeded", 2, 1), done.error
    assert done.skipped_reasons["null_identifier"]["count"] == 1
    assert traits_of("email", "ada@example.com") == {"email": "ada@example.com", "has_open_ticket": yes,
                                                     "open_tickets": 1}  # fmt: skip
    assert traits_of("email", "grace@example.com") == {"email": "grace@example.com", "has_open_ticket": no,
                                                       "open_tickets": 0}  # fmt: skip
