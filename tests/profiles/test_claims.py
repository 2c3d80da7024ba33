"""How the pipeline takes its work: each transaction claims events (row locks other workers
skip) and, under load, the backlog stored after them; identifiers not stored yet are locked
one by one, or all at once when there are too many for PostgreSQL's lock table."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from django.db import connection, transaction

from ingest.pipeline import events_process
from profiles.models import Event, Identity, Profile
from profiles.services import resolution
from profiles.services.events import EventIn, events_store
from profiles.services.resolution import CLAIM_BATCH, events_resolve

T0 = datetime(2026, 11, 1, tzinfo=UTC)


@pytest.fixture(autouse=True)
def _fresh_frontier(monkeypatch: pytest.MonkeyPatch) -> None:
    """The backlog search resumes past what this process claimed before: start afresh."""
    monkeypatch.setattr(resolution, "_frontier", 0)


def visit(source_id: int, message_id: str, anonymous_id: str, at: datetime) -> EventIn:
    return EventIn(
        source_id=source_id, message_id=message_id, type="page", event=None, name="Home", user_id=None,
        anonymous_id=anonymous_id, group_id=None, previous_id=None, timestamp=at, original_timestamp=None,
        sent_at=None, received_at=T0, properties={}, traits={}, context={}, integrations={}, extra=None,
    )  # fmt: skip


def stored(source_id: int, count: int, tag: str, start: int = 0) -> list[int]:
    """`count` page views of distinct visitors, stored as one ingest batch."""
    events = [visit(source_id, f"{tag}-{n}", f"{tag}-visitor-{n}", T0 + timedelta(seconds=n))
              for n in range(start, start + count)]  # fmt: skip
    with transaction.atomic():
        return events_store(events=events)


def unprocessed() -> int:
    return Event.objects.filter(processed_at__isnull=True).count()


@pytest.mark.django_db
def test_a_task_takes_the_backlog_stored_after_its_events(source):
    first = stored(source.pk, 100, "a")
    later = [stored(source.pk, 100, f"b{i}") for i in range(4)]

    assert events_process(event_ids=first).processed == 500
    assert unprocessed() == 0
    assert Event.objects.filter(profile__isnull=True).count() == 0
    # The later batches' own tasks find their events done.
    assert [events_process(event_ids=ids).processed for ids in later] == [0, 0, 0, 0]


@pytest.mark.django_db
def test_one_transaction_takes_at_most_a_claim_batch(source):
    first = stored(source.pk, 100, "a")
    stored(source.pk, CLAIM_BATCH + 50, "b")

    assert events_process(event_ids=first).processed == CLAIM_BATCH
    assert unprocessed() == 150


@pytest.mark.django_db
def test_without_a_backlog_only_the_given_events_are_resolved(source):
    first = stored(source.pk, 10, "a")
    stored(source.pk, 10, "b")

    assert len(events_resolve(event_ids=first).changed_profile_ids) == 10
    assert Event.objects.filter(profile__isnull=False).count() == 10


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_events_another_worker_holds_are_skipped_not_waited_for(source):
    ids = stored(source.pk, 20, "a")
    s = connection.settings_dict
    other = psycopg.connect(
        host=s["HOST"] or "127.0.0.1", port=s["PORT"] or 5432, user=s["USER"], dbname=s["NAME"], connect_timeout=5
    )
    try:
        # Another worker's transaction has claimed the first ten.
        other.execute("SELECT id FROM profiles_event WHERE id = ANY(%s) FOR NO KEY UPDATE", [ids[:10]])
        with connection.cursor() as cursor:
            cursor.execute("SET lock_timeout = '2s'")  # waiting would fail the test, not hang it
        try:
            done = events_process(event_ids=ids)
        finally:
            with connection.cursor() as cursor:
                cursor.execute("RESET lock_timeout")
        assert done.processed == 10
        assert set(Event.objects.filter(processed_at__isnull=True).values_list("id", flat=True)) == set(ids[:10])
        other.rollback()  # that worker failed: its task is retried, and finds them free
        assert events_process(event_ids=ids).processed == 10
        assert unprocessed() == 0
    finally:
        other.close()


def held_advisory_locks() -> list[tuple[str, int, str]]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT mode, objsubid, classid::text FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()"
        )
        return list(cursor.fetchall())


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)  # each atomic block is a transaction of its own
def test_new_identifiers_are_locked_one_by_one_or_all_at_once(monkeypatch):
    keys = {("anonymous_id", f"v{n}") for n in range(5)}
    with transaction.atomic():
        resolution._lock_identifiers(keys)
        locks = held_advisory_locks()
    # One shared lock on all of resolution (objsubid 2: the two-int form), and one
    # exclusive lock per identifier (objsubid 1: a 64-bit key).
    assert sorted(mode for mode, subid, _ in locks if subid == 2) == ["ShareLock"]
    assert sorted(mode for mode, subid, _ in locks if subid == 1) == ["ExclusiveLock"] * 5

    monkeypatch.setattr(resolution, "MAX_IDENTIFIER_LOCKS", 4)
    with transaction.atomic():
        resolution._lock_identifiers(keys)
        locks = held_advisory_locks()
    assert [(mode, subid) for mode, subid, _ in locks] == [("ExclusiveLock", 2)]


@pytest.mark.django_db
def test_an_identifier_stored_while_waiting_for_its_lock_is_attached_not_created_again(source, monkeypatch):
    """Between reading which identifiers exist and locking the new ones, another worker may
    store one of them (it held the lock): it must be read again, not inserted twice."""
    ids = stored(source.pk, 1, "a")
    real_lock = resolution._lock_identifiers
    other: dict[str, Profile] = {}

    def lock_then_meanwhile(new: set[tuple[str, str]]) -> None:
        real_lock(new)
        if not other:  # the worker that held the lock stored the visitor, and committed
            other["profile"] = Profile.objects.create()
            Identity.objects.create(
                kind="anonymous_id", value="a-visitor-0", profile=other["profile"], first_seen_at=T0, last_seen_at=T0
            )

    monkeypatch.setattr(resolution, "_lock_identifiers", lock_then_meanwhile)
    events_resolve(event_ids=ids, processed_at=T0)

    assert Profile.objects.get() == other["profile"]
    assert Event.objects.get().profile == other["profile"]
