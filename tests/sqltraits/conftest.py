from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.db import connection

from profiles.models import Identity
from sqltraits.models import SqlTrait, SqlTraitRun
from sqltraits.services import sql_trait_create, sql_trait_run_request


class Tickets:
    """A `tickets` table in the CDP's own database (what SQL traits read by default)."""

    def add(self, id: int, user_id: str | None, status: str = "open", priority: int = 1, email: str | None = None,
            subject: str = "") -> None:  # fmt: skip
        with connection.cursor() as cursor:
            cursor.execute("INSERT INTO tickets (id, user_id, email, status, priority, subject) VALUES "
                           "(%s, %s, %s, %s, %s, %s)", [id, user_id, email, status, priority, subject])  # fmt: skip

    def execute(self, sql: str, params: list[Any] | None = None) -> None:
        with connection.cursor() as cursor:
            cursor.execute(sql, params or [])

    def snapshot(self) -> list[tuple[Any, ...]]:
        with connection.cursor() as cursor:
            cursor.execute("SELECT id, user_id, email, status, priority FROM tickets ORDER BY id")
            return list(cursor.fetchall())


@pytest.fixture
def tickets(transactional_db: None) -> Iterator[Tickets]:
    """Committed (the test is transactional), so the read-only connection of a run sees it;
    dropped after, as the flush only empties Django's tables."""
    with connection.cursor() as cursor:
        cursor.execute("DROP TABLE IF EXISTS tickets")
        cursor.execute("CREATE TABLE tickets (id integer PRIMARY KEY, user_id varchar(600), email varchar(200), "
                       "status varchar(20), priority integer, subject text)")  # fmt: skip
    yield Tickets()
    with connection.cursor() as cursor:
        cursor.execute("DROP TABLE IF EXISTS tickets")


OPEN_TICKETS = (
    "SELECT user_id, SUM(CASE WHEN status = 'open' THEN 1 ELSE 0 END) AS open_tickets, MAX(priority) AS top_priority "
    "FROM tickets GROUP BY user_id"
)


@pytest.fixture
def define() -> Callable[..., SqlTrait]:
    def _define(query: str = OPEN_TICKETS, key: str = "open_tickets", **fields: Any) -> SqlTrait:
        return sql_trait_create(data={"key": key, "query": query, **fields})

    return _define


@pytest.fixture
def run() -> Callable[[SqlTrait], SqlTraitRun]:
    """Ask for a run and let it happen as a worker would (tasks are eager; in a transactional
    test the commit hands it over at once, and the pipeline runs on what it sent)."""

    def _run(trait: SqlTrait) -> SqlTraitRun:
        queued, new = sql_trait_run_request(trait_id=trait.pk, trigger="api")
        assert new
        return SqlTraitRun.objects.get(pk=queued.pk)

    return _run


def traits_of(kind: str, value: str) -> dict[str, Any] | None:
    """A person's traits as the profile holds them after the pipeline (None: no such person)."""
    identity = Identity.objects.filter(kind=kind, value=value).select_related("profile").first()
    if identity is None:
        return None
    profile = identity.profile
    while profile.merged_into_id:
        profile = profile.merged_into
    return dict(profile.traits)
