"""The profile change feed: every transaction that changes a person writes, in itself, a row
per changed profile saying what changed; consumers read it in order from durable cursors,
lose nothing when killed, do no harm when run twice; the feed is pruned behind them."""

from __future__ import annotations

import threading
import time

import pytest
from celery import shared_task
from django.contrib.auth.models import User
from django.db import connection, transaction

from profiles.models import FeedConsumer, Identity, Profile, ProfileChange
from profiles.services.feed import Change, FeedRow, feed_consume, feed_prune, feed_write
from profiles.services.identity_ops import identities_rebuild, identity_remove, profile_merge, profile_split
from profiles.services.privacy import profile_delete
from tests.profiles.test_claims import connect_other
from tests.profiles.test_resolution import identify, page

pytestmark = pytest.mark.django_db


def track(anonymous_id, event, t, **extra):
    return {"type": "track", "anonymousId": anonymous_id, "event": event, "timestamp": t, **extra}


def feed(**match):
    """The feed's rows, oldest first, as `(profile id, what)`."""
    return [(c.profile_id, c.what) for c in ProfileChange.objects.order_by("id") if match.items() <= c.what.items()]


def owner(kind, value):
    return Identity.objects.get(kind=kind, value=value).profile_id


@pytest.fixture
def staff():
    return User.objects.create_superuser("staff", "s@x.io", "pw")


def test_resolution_writes_what_changed_per_profile_in_its_transaction(send):
    send(
        identify("ana", "laptop", t="2026-11-01T10:00:00Z", email="ana@x.io", plan="pro"),
        track("laptop", "Order Completed", "2026-11-01T10:05:00Z"),
        track("laptop", "Order Completed", "2026-11-01T10:06:00Z"),
        page("laptop", t="2026-11-01T10:07:00Z"),
    )
    ana = owner("user_id", "ana")
    assert feed() == [(ana, {
        "cause": "resolution",
        "events": {"Order Completed": 2, "Page Viewed": 1},
        "traits": ["email", "plan"],
        "identifiers": ["anonymous_id:laptop", "email:ana@x.io", "user_id:ana"],
    })]  # fmt: skip
    send(identify("ana", t="2026-11-02T10:00:00Z", plan="pro"))  # nothing a consumer acts on changed
    assert len(feed()) == 1
    send(identify("ana", t="2026-11-03T10:00:00Z", plan="team"))
    assert feed()[-1] == (ana, {"cause": "resolution", "traits": ["plan"]})


def test_a_merge_writes_the_winner_and_the_loser(send):
    send(page("phone", t="2026-11-01T09:00:00Z"), identify("ana", "laptop", t="2026-11-01T10:00:00Z", email="a@x.io"))
    phone, ana = owner("anonymous_id", "phone"), owner("user_id", "ana")
    send(identify(None, "phone", t="2026-11-02T10:00:00Z", email="a@x.io"))
    winner, loser = (phone, ana) if phone < ana else (ana, phone)
    rows = dict(feed()[-2:])
    assert rows[loser] == {"cause": "resolution", "merged_into": winner}
    assert rows[winner]["merged"] == [loser]
    held = {f"{k}:{v}" for k, v in Identity.objects.filter(profile_id=winner).values_list("kind", "value")}
    assert rows[winner]["identifiers"] and set(rows[winner]["identifiers"]) <= held


def test_staff_operations_write_the_feed(send, staff):
    send(page("laptop", t="2026-11-01T09:00:00Z"), identify("ana", "laptop", t="2026-11-01T10:00:00Z", email="a@x.io"),
         page("bo-phone", t="2026-11-02T09:00:00Z"))  # fmt: skip
    send(identify(None, "bo-phone", t="2026-11-03T10:00:00Z", email="a@x.io", name="Ana"))
    ana = owner("user_id", "ana")
    ProfileChange.objects.all().delete()

    split = profile_split(profile_id=ana, identifiers=[("anonymous_id", "bo-phone")], actor=staff, reason="wrong")
    bo = split.profile_ids[1]
    rows = dict(feed(cause="split"))
    assert rows[ana]["split"] == [bo] and rows[ana]["removed"] == ["anonymous_id:bo-phone"]
    assert rows[bo] == {"cause": "split", "split_from": ana, "identifiers": ["anonymous_id:bo-phone"]}

    identity_remove(profile_id=ana, kind="anonymous_id", value="laptop", actor=staff, reason="shared laptop")
    removed = {"cause": "remove_identifier", "removed": ["anonymous_id:laptop"]}
    assert feed(cause="remove_identifier") == [(ana, removed)]

    profile_merge(profile_ids=[ana, bo], actor=staff, reason="same person after all", override=True)
    rows = dict(feed(cause="manual_merge"))
    assert rows[bo] == {"cause": "manual_merge", "merged_into": ana}
    assert rows[ana]["merged"] == [bo] and rows[ana]["identifiers"] == ["anonymous_id:bo-phone"]

    identities_rebuild(actor=staff, reason="settings changed")
    rebuilt = feed(cause="rebuild")
    assert rebuilt and all(what["rebuilt"] for _, what in rebuilt)
    assert {pid for pid, what in rebuilt if "merged_into" in what} >= {ana}  # the old ids point at their heirs

    live = owner("user_id", "ana")
    assert profile_delete(profile_id=live, actor=staff, reason="erasure request") is True
    assert (live, {"cause": "delete", "deleted": True}) in feed(cause="delete")
    assert not Profile.objects.filter(pk=live).exists()


def test_a_change_is_in_the_feed_only_if_its_transaction_commits(send):
    with pytest.raises(RuntimeError), transaction.atomic():
        feed_write([Change(1, "test", traits={"x"})])
        raise RuntimeError("rolled back")
    assert ProfileChange.objects.count() == 0


@shared_task(name="tests.feed_noop")
def _noop() -> None:
    """The task the test consumers are registered with: their tests consume by hand."""


@pytest.fixture
def consumer():
    FeedConsumer.objects.create(name="test", task="tests.feed_noop")
    return "test"


def test_a_consumer_reads_in_order_once_and_a_failure_loses_nothing(send, consumer):
    send(*[page(f"v{i}", t=f"2026-11-01T10:{i:02d}:00Z") for i in range(7)])
    send(*[page(f"w{i}", t=f"2026-11-01T11:{i:02d}:00Z") for i in range(5)])
    seen: list[FeedRow] = []

    def crash(rows):
        seen.extend(rows)
        raise RuntimeError("worker killed mid-batch")

    with pytest.raises(RuntimeError):
        feed_consume(consumer=consumer, handle=crash, batch=4)
    assert FeedConsumer.objects.get(name=consumer).position == 0  # not moved: those rows come again
    seen.clear()
    assert feed_consume(consumer=consumer, handle=seen.extend, batch=4) == 12
    assert [r.id for r in seen] == sorted(r.id for r in seen) and len({r.profile_id for r in seen}) == 12
    assert feed_consume(consumer=consumer, handle=seen.extend, batch=4) == 0  # run twice: nothing again
    assert feed_prune() == 12 and ProfileChange.objects.count() == 0


def test_the_feed_is_kept_until_every_consumer_passed_it(send, consumer):
    FeedConsumer.objects.create(name="slow", task="tests.feed_noop")
    send(page("v1", t="2026-11-01T10:00:00Z"))
    feed_consume(consumer=consumer, handle=lambda rows: None)
    assert feed_prune() == 0 and ProfileChange.objects.count() == 1
    feed_consume(consumer="slow", handle=lambda rows: None)
    assert feed_prune() == 1


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_reader_never_sees_a_later_change_before_an_earlier_one_commits():
    """Ids are taken when a row is inserted, transactions commit in any order: the feed lock
    makes the visible rows always a prefix, so a cursor can never pass a row still to come."""
    first = connect_other()
    first.execute("SELECT pg_advisory_xact_lock(%s, %s)", (0x43445052, 3))  # as feed_write does
    first.execute('INSERT INTO profiles_profilechange (profile_id, at, what) VALUES (1, now(), \'{"cause": "a"}\')')
    done = threading.Event()

    def second():
        with transaction.atomic():
            feed_write([Change(2, "b", traits={"x"})])
        connection.close()
        done.set()

    writer = threading.Thread(target=second)
    writer.start()
    time.sleep(0.3)
    reader = connect_other()
    try:
        assert not done.is_set()  # the later writer waits for the earlier one's commit
        assert reader.execute("SELECT count(*) FROM profiles_profilechange").fetchone()[0] == 0
        first.commit()
        writer.join(5)
        ids = [r[0] for r in reader.execute("SELECT profile_id FROM profiles_profilechange ORDER BY id").fetchall()]
        assert ids == [1, 2]
    finally:
        first.close()
        reader.close()
        ProfileChange.objects.all().delete()


def test_consumers_are_known_from_code_even_if_their_cursor_rows_went(send, django_capture_on_commit_callbacks):
    """The apps register their consumers at startup: a cursor row lost (a test database
    flushed, a table restored without it) is made again, from the start, and wakes still
    reach it."""
    from profiles.computed.services import computed_trait_create
    from profiles.models import ComputedTraitValue

    with django_capture_on_commit_callbacks(execute=True):
        computed_trait_create(data={"key": "views", "type": "counter", "event": "Page Viewed"})
    FeedConsumer.objects.all().delete()
    send(page("v1", t="2026-11-01T10:00:00Z"))
    assert ComputedTraitValue.objects.get(trait__key="views").value == 1
    assert set(FeedConsumer.objects.values_list("name", flat=True)) >= {"computed_traits", "audiences"}


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_second_task_leaves_the_work_to_the_one_holding_the_cursor(send):
    """With a wake per commit, a second task of a consumer starts while the first reads on: it
    must not hold a worker process waiting for the cursor (the pipeline's batches queued
    behind two such tasks), and the first still reads every change."""
    FeedConsumer.objects.create(name="test", task="tests.feed_noop")
    try:
        send(page("v1", t="2026-11-01T10:00:00Z"))
        holder = connect_other()
        holder.execute("SELECT 1 FROM profiles_feedconsumer WHERE name = 'test' FOR UPDATE")
        started = time.monotonic()
        assert feed_consume(consumer="test", handle=lambda rows: None) == 0
        assert time.monotonic() - started < 1.0  # it did not wait for the lock
        holder.rollback()
        holder.close()
        seen: list[FeedRow] = []
        assert feed_consume(consumer="test", handle=seen.extend) == 1 and seen[0].profile_id
    finally:
        ProfileChange.objects.all().delete()
        FeedConsumer.objects.filter(name="test").delete()
