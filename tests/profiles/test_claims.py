"""How the pipeline takes its work: each transaction claims accepted batches (row locks other
workers skip) and, under load, the backlog after them; drops messages the log already holds;
locks identifiers not stored yet one by one, or all at once when there are too many for
PostgreSQL's lock table; and writes each message to the log once, with its profile."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from django.db import DatabaseError, connection, transaction

from ingest.pipeline import events_process
from profiles.models import Event, EventBatch, Identity, Profile
from profiles.services import resolution
from profiles.services.events import EventIn, batch_store
from profiles.services.resolution import CLAIM_BATCH, DuplicateInFlight, batches_resolve

T0 = datetime(2026, 11, 1, tzinfo=UTC)


@pytest.fixture(autouse=True)
def _fresh_process(monkeypatch: pytest.MonkeyPatch) -> None:
    """The backlog search resumes past what this process claimed before, and the log is
    looked at first for a while after a duplicate: start afresh."""
    monkeypatch.setattr(resolution, "_frontier", 0)
    monkeypatch.setattr(resolution, "_check_log_until", 0.0)
    monkeypatch.setattr(resolution, "_looked_behind", 0.0)


def connect_other() -> psycopg.Connection:
    s = connection.settings_dict
    return psycopg.connect(
        host=s["HOST"] or "127.0.0.1", port=s["PORT"] or 5432, user=s["USER"], dbname=s["NAME"], connect_timeout=5
    )


def visit(source_id: int, message_id: str, anonymous_id: str, at: datetime) -> EventIn:
    return EventIn(
        source_id=source_id, message_id=message_id, type="page", event=None, name="Home", user_id=None,
        anonymous_id=anonymous_id, group_id=None, previous_id=None, timestamp=at, original_timestamp=None,
        sent_at=None, received_at=T0, properties={}, traits={}, context={}, integrations={}, extra=None,
    )  # fmt: skip


def accepted(source_id: int, count: int, tag: str, start: int = 0) -> int:
    """`count` page views of distinct visitors, accepted as one batch."""
    events = [visit(source_id, f"{tag}-{n}", f"{tag}-visitor-{n}", T0 + timedelta(seconds=n))
              for n in range(start, start + count)]  # fmt: skip
    with transaction.atomic():
        return batch_store(events=events)


@pytest.mark.django_db
def test_a_task_takes_the_backlog_accepted_after_its_batch(source):
    first = accepted(source.pk, 100, "a")
    later = [accepted(source.pk, 100, f"b{i}") for i in range(4)]

    assert events_process(batch_ids=[first]).processed == 500
    assert not EventBatch.objects.exists()
    assert Event.objects.filter(profile__isnull=False, processed_at__isnull=False).count() == 500
    # The later batches' own tasks find nothing left.
    assert [events_process(batch_ids=[b]).processed for b in later] == [0, 0, 0, 0]


@pytest.mark.django_db
def test_a_batch_whose_task_was_lost_is_taken_by_a_later_task_within_seconds(source, monkeypatch):
    """A batch behind the tasks that run (its task lost with a worker, or never published):
    a later task's backlog claim looks behind its own batch every LOOK_BEHIND_EVERY."""
    orphan = accepted(source.pk, 100, "lost")
    mine = accepted(source.pk, 100, "a")
    monkeypatch.setattr(resolution, "_looked_behind", time.monotonic())  # looked just now

    assert events_process(batch_ids=[mine]).processed == 100
    assert list(EventBatch.objects.values_list("id", flat=True)) == [orphan]

    monkeypatch.setattr(resolution, "_looked_behind", time.monotonic() - resolution.LOOK_BEHIND_EVERY)
    later = accepted(source.pk, 100, "b")
    assert events_process(batch_ids=[later]).processed == 200
    assert not EventBatch.objects.exists()


@pytest.mark.django_db
def test_an_event_is_never_processed_before_it_was_received(source):
    """A task's backlog claim can take a batch accepted after the task began."""
    later = accepted(source.pk, 5, "a")  # received at T0
    batches_resolve(batch_ids=[later], processed_at=T0 - timedelta(seconds=1))
    assert {e.processed_at for e in Event.objects.all()} == {T0}


@pytest.mark.django_db
def test_one_transaction_takes_at_most_a_claim_batch(source):
    first = accepted(source.pk, 100, "a")
    accepted(source.pk, CLAIM_BATCH - 100, "b")
    big = accepted(source.pk, 50, "c")

    assert events_process(batch_ids=[first]).processed == CLAIM_BATCH
    assert list(EventBatch.objects.values_list("id", flat=True)) == [big]


@pytest.mark.django_db
def test_without_a_backlog_only_the_given_batches_are_resolved(source):
    first = accepted(source.pk, 10, "a")
    accepted(source.pk, 10, "b")

    assert batches_resolve(batch_ids=[first], processed_at=T0).processed == 10
    assert Event.objects.count() == 10 and EventBatch.objects.count() == 1


@pytest.mark.django_db
def test_messages_the_log_holds_are_dropped_and_counted(source):
    first = accepted(source.pk, 3, "a")
    assert batches_resolve(batch_ids=[first], processed_at=T0).duplicates == {}
    again = accepted(source.pk, 3, "a")  # a replayed request
    twice = [accepted(source.pk, 2, "b"), accepted(source.pk, 2, "b")]  # the same messages, both waiting

    result = batches_resolve(batch_ids=[again, *twice], processed_at=T0)

    assert (result.processed, dict(result.duplicates)) == (7, {(source.pk, T0): 5})
    assert sorted(Event.objects.values_list("message_id", flat=True)) == ["a-0", "a-1", "a-2", "b-0", "b-1"]
    assert not EventBatch.objects.exists()


@pytest.mark.django_db
def test_a_duplicate_found_on_writing_is_resolved_again_with_the_log_looked_at(source, monkeypatch):
    """The log is not looked at first: the write finds the duplicate, the transaction is
    undone whole and done again with the look-up, which then stays on for a while."""
    first = accepted(source.pk, 2, "a")
    batches_resolve(batch_ids=[first], processed_at=T0)
    profile_of_a0 = Event.objects.get(message_id="a-0").profile_id
    looked: list[int] = []
    real_stored = resolution.events_stored
    monkeypatch.setattr(resolution, "events_stored", lambda keys: looked.append(len(keys)) or real_stored(keys))
    mixed = accepted(source.pk, 3, "a")  # a-0 and a-1 again, and a new a-2

    result = batches_resolve(batch_ids=[mixed], processed_at=T0)

    assert (result.processed, dict(result.duplicates), result.resolved) == (3, {(source.pk, T0): 2}, 1)
    assert looked == [3]  # only on the second try
    assert Event.objects.filter(message_id="a-0").get().profile_id == profile_of_a0
    assert sorted(Event.objects.values_list("message_id", flat=True)) == ["a-0", "a-1", "a-2"]
    assert Profile.objects.count() == 3 and not EventBatch.objects.exists()
    batches_resolve(batch_ids=[accepted(source.pk, 1, "c")], processed_at=T0)
    assert looked == [3, 1]  # looked at first now


@pytest.mark.django_db
def test_a_message_written_meanwhile_by_another_worker_fails_the_transaction_whole(source, monkeypatch):
    """The same message in two batches resolved at once: both read the log before either
    wrote. The second write conflicts, nothing of its transaction is kept, and its task
    retries (a DatabaseError), then finds the message in the log."""
    first = accepted(source.pk, 1, "a")
    batches_resolve(batch_ids=[first], processed_at=T0)
    again = accepted(source.pk, 1, "a")
    monkeypatch.setattr(resolution, "events_stored", lambda keys: set())  # as if read before the other wrote

    with pytest.raises(DuplicateInFlight) as failed:
        batches_resolve(batch_ids=[again], processed_at=T0)
    assert isinstance(failed.value, DatabaseError)
    assert Event.objects.count() == 1 and list(EventBatch.objects.values_list("id", flat=True)) == [again]

    monkeypatch.undo()
    assert batches_resolve(batch_ids=[again], processed_at=T0).duplicates == {(source.pk, T0): 1}


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_batches_another_worker_holds_are_skipped_not_waited_for(source):
    held, free = accepted(source.pk, 10, "a"), accepted(source.pk, 10, "b")
    other = connect_other()
    try:
        # Another worker's transaction has claimed the first batch.
        other.execute("SELECT id FROM profiles_eventbatch WHERE id = %s FOR UPDATE", [held])
        with connection.cursor() as cursor:
            cursor.execute("SET lock_timeout = '2s'")  # waiting would fail the test, not hang it
        try:
            done = events_process(batch_ids=[held, free])
        finally:
            with connection.cursor() as cursor:
                cursor.execute("RESET lock_timeout")
        assert done.processed == 10
        assert list(EventBatch.objects.values_list("id", flat=True)) == [held]
        other.rollback()  # that worker failed: its task is retried, and finds the batch free
        assert events_process(batch_ids=[held]).processed == 10
        assert Event.objects.count() == 20
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
        assert resolution._lock_identifiers(keys, wait=True) == set()
        locks = held_advisory_locks()
    # One shared lock on all of resolution (objsubid 2: the two-int form), and one
    # exclusive lock per identifier (objsubid 1: a 64-bit key).
    assert sorted(mode for mode, subid, _ in locks if subid == 2) == ["ShareLock"]
    assert sorted(mode for mode, subid, _ in locks if subid == 1) == ["ExclusiveLock"] * 5

    monkeypatch.setattr(resolution, "MAX_IDENTIFIER_LOCKS", 4)
    with transaction.atomic():
        assert resolution._lock_identifiers(keys, wait=False) == set()
        locks = held_advisory_locks()
    assert [(mode, subid) for mode, subid, _ in locks] == [("ExclusiveLock", 2)]


BUSY = "a-visitor-1"


def resolve_while_another_worker_holds(source_id: int, hold: Callable[[psycopg.Connection], None]) -> dict[str, Any]:
    """Accept a batch of four visitors, with a second message of `BUSY`, and resolve it
    while another worker's transaction, set up by `hold`, is open. That worker commits once
    it sees events written (or after 10 s): what it saw is returned."""
    events = [visit(source_id, f"a-{n}", f"a-visitor-{n}", T0 + timedelta(seconds=n)) for n in range(4)]
    events.append(visit(source_id, "a-4", BUSY, T0 + timedelta(seconds=4)))
    with transaction.atomic():
        batch = batch_store(events=events)
    seen: dict[str, Any] = {}
    holding = threading.Event()

    def other_worker() -> None:
        with connect_other() as other, connect_other() as look:
            hold(other)
            holding.set()
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and "written" not in seen:
                written = look.execute("SELECT anonymous_id FROM profiles_event ORDER BY message_id").fetchall()
                if written:
                    seen["written"] = [row[0] for row in written]
                    seen["waiting"] = look.execute("SELECT size FROM profiles_eventbatch").fetchall()
                look.rollback()
                time.sleep(0.05)
            other.commit()

    worker = threading.Thread(target=other_worker)
    worker.start()
    assert holding.wait(10)
    seen["result"] = batches_resolve(batch_ids=[batch], processed_at=T0)
    worker.join()
    return seen


def assert_busy_visitor_waited(seen: dict[str, Any]) -> None:
    # Written while the other worker still held the visitor: everyone else.
    assert seen.get("written") == ["a-visitor-0", "a-visitor-2", "a-visitor-3"]
    assert seen["waiting"] == [(2,)]  # the visitor's two messages, put back as one batch
    # Then the visitor's messages too.
    assert seen["result"].processed == 5
    assert not EventBatch.objects.exists()
    assert Event.objects.count() == 5


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_messages_of_an_identifier_another_worker_is_creating_wait_for_it_not_the_others(source):
    """Another worker is creating a visitor (it holds the visitor's lock until it commits).
    The messages of other visitors are resolved and written without waiting; the visitor's
    are put back as a batch and resolved once the lock is free, on the worker's profile."""
    created: list[int] = []

    def create_visitor(other: psycopg.Connection) -> None:
        other.execute("SELECT pg_advisory_xact_lock(%s)", [resolution._lock_hash(("anonymous_id", BUSY))])
        created.append(other.execute(
            "INSERT INTO profiles_profile (key, created_at, updated_at, traits, trait_meta, merge_count) "
            "VALUES ('use_other', now(), now(), '{}', '{}', 0) RETURNING id"
        ).fetchone()[0])  # fmt: skip
        other.execute(
            "INSERT INTO profiles_identity (kind, value, profile_id, first_seen_at, last_seen_at, first_message_id, "
            "separations) VALUES ('anonymous_id', %s, %s, %s, %s, '', '{}')",
            [BUSY, created[0], T0, T0],
        )

    assert_busy_visitor_waited(resolve_while_another_worker_holds(source.pk, create_visitor))
    assert set(Event.objects.filter(anonymous_id=BUSY).values_list("profile_id", flat=True)) == {created[0]}
    assert Profile.objects.count() == 4
    assert Identity.objects.filter(value=BUSY).count() == 1


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_messages_of_a_profile_another_worker_is_changing_wait_for_it_not_the_others(source):
    """Another worker holds the row lock of the visitor's profile (it is resolving other
    messages of that person): the same, and the visitor's messages land on that profile,
    with the traits the other worker set kept."""
    profile = Profile.objects.create()
    Identity.objects.create(kind="anonymous_id", value=BUSY, profile=profile, first_seen_at=T0, last_seen_at=T0)

    def change_profile(other: psycopg.Connection) -> None:
        other.execute('UPDATE profiles_profile SET traits = \'{"plan": "pro"}\' WHERE id = %s', [profile.pk])

    assert_busy_visitor_waited(resolve_while_another_worker_holds(source.pk, change_profile))
    assert set(Event.objects.filter(anonymous_id=BUSY).values_list("profile_id", flat=True)) == {profile.pk}
    assert Profile.objects.get(pk=profile.pk).traits == {"plan": "pro"}
    assert Profile.objects.count() == 4


@pytest.mark.django_db
def test_an_identifier_stored_while_waiting_for_its_lock_is_attached_not_created_again(source, monkeypatch):
    """Between reading which identifiers exist and locking the new ones, another worker may
    store one of them (it held the lock): it must be read again, not inserted twice."""
    batch = accepted(source.pk, 1, "a")
    real_lock = resolution._lock_identifiers
    other: dict[str, Profile] = {}

    def lock_then_meanwhile(new: set[tuple[str, str]], *, wait: bool) -> set[tuple[str, str]]:
        held = real_lock(new, wait=wait)
        if not other:  # the worker that held the lock stored the visitor, and committed
            other["profile"] = Profile.objects.create()
            Identity.objects.create(
                kind="anonymous_id", value="a-visitor-0", profile=other["profile"], first_seen_at=T0, last_seen_at=T0
            )
        return held

    monkeypatch.setattr(resolution, "_lock_identifiers", lock_then_meanwhile)
    batches_resolve(batch_ids=[batch], processed_at=T0)

    assert Profile.objects.get() == other["profile"]
    assert Event.objects.get().profile == other["profile"]


@pytest.mark.django_db
def test_events_stored_unprocessed_before_batches_are_moved_into_batches(source):
    """Migration 0010: events stored by the edge before it kept batches, and not processed
    yet, go back into batches, which the pipeline takes from then on."""
    from importlib import import_module

    from django.apps import apps

    migration = import_module("profiles.migrations.0010_event_batches")
    Event.objects.create(
        source_id=source.pk, message_id="old-1", type="page", anonymous_id="v1", timestamp=T0, received_at=T0,
        properties={"path": "/"}, context={"ip": "1.2.3.4"},
    )  # fmt: skip
    migration.unprocessed_events_to_batches(apps, None)

    assert not Event.objects.exists()
    batch = EventBatch.objects.get()
    assert (batch.source_id, batch.size, batch.received_at) == (source.pk, 1, T0)
    assert batches_resolve(batch_ids=[batch.id], processed_at=T0).processed == 1
    event = Event.objects.get()
    assert (event.message_id, event.properties, event.context) == ("old-1", {"path": "/"}, {"ip": "1.2.3.4"})
    assert event.profile is not None
