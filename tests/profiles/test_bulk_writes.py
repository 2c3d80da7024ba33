"""The hot path's bulk writes and their durability setting."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection, transaction

from profiles.models import Event, EventBatch, Identity, Profile
from profiles.services.bulk import resolution_settings, rows_insert, rows_matching, rows_update
from profiles.services.resolution import batches_resolve


def _setting(name: str) -> str:
    with connection.cursor() as cursor:
        cursor.execute(f"SHOW {name}")
        return cursor.fetchone()[0]


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_resolution_settings_apply_to_their_own_outermost_transaction_only():
    settings = ("synchronous_commit", "enable_seqscan", "enable_hashjoin", "enable_mergejoin")
    with transaction.atomic():
        resolution_settings()
        assert [_setting(n) for n in settings] == ["off"] * 4
    assert [_setting(n) for n in settings] == ["on"] * 4  # SET LOCAL ended with the transaction
    with transaction.atomic(), transaction.atomic():  # inside a caller's transaction, e.g. a staff operation
        resolution_settings()
        assert [_setting(n) for n in settings] == ["on"] * 4


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_resolution_runs_with_its_settings(source, monkeypatch):
    from profiles.services import resolution
    from tests.profiles.test_claims import accepted

    accepted(source.pk, 1, "a")
    seen: list[list[str]] = []
    real_claim = resolution._claim

    def claim(*args):
        seen.append([_setting(n) for n in ("synchronous_commit", "enable_seqscan", "enable_hashjoin")])
        return real_claim(*args)

    monkeypatch.setattr(resolution, "_claim", claim)
    batch = EventBatch.objects.get()
    assert resolution.batches_resolve(batch_ids=[batch.id], processed_at=batch.received_at).processed == 1
    assert seen == [["off", "off", "off"]]


@pytest.mark.django_db
def test_rows_insert_returns_ids_in_order_and_can_skip_conflicts():
    at = datetime(2026, 11, 1, tzinfo=UTC)
    columns = [("key", "text"), ("created_at", "timestamptz"), ("updated_at", "timestamptz"), ("traits", "jsonb"),
               ("trait_meta", "jsonb"), ("merge_count", "int4")]  # fmt: skip
    rows = [(f"use_{i}", at, at, {"n": i, "q": 'a "quoted" \\ value'}, {}, 0) for i in range(5)]
    ids = rows_insert(table=Profile._meta.db_table, columns=columns, rows=rows, returning="id")
    assert [Profile.objects.get(id=i).traits["n"] for i in ids] == [0, 1, 2, 3, 4]
    assert Profile.objects.get(id=ids[0]).traits["q"] == 'a "quoted" \\ value'
    again = rows_insert(table=Profile._meta.db_table, columns=columns, rows=[*rows[:2], ("use_new", at, at, {}, {}, 0)],
                        returning="id", skip_conflicts=True)  # fmt: skip
    assert len(again) == 1 and Profile.objects.get(id=again[0]).key == "use_new"


@pytest.mark.django_db
def test_rows_matching_finds_rows_by_a_pair_of_columns_past_any_parameter_limit():
    """How resolution reads which identifiers are stored, and dedup which messages the log
    holds: a chunk's thousands of keys in one call, on SQLite as on PostgreSQL."""
    profile = Profile.objects.create()
    at = datetime(2026, 11, 1, tzinfo=UTC)
    Identity.objects.bulk_create(
        Identity(kind="anonymous_id", value=f"v{i}", profile=profile, first_seen_at=at, last_seen_at=at)
        for i in range(0, 1500, 2)
    )
    keys = [("anonymous_id", f"v{i}") for i in range(1500)] + [("user_id", "v0")]
    found = rows_matching(
        table=Identity._meta.db_table, select=("value", "profile_id"), pair=(("kind", "text"), ("value", "text")),
        keys=keys,
    )  # fmt: skip
    assert sorted(found) == sorted((f"v{i}", profile.pk) for i in range(0, 1500, 2))
    assert rows_matching(table=Identity._meta.db_table, select=("id",), pair=(("kind", "text"), ("value", "text")),
                         keys=[]) == []  # fmt: skip


@pytest.mark.django_db
def test_constants_are_written_to_every_row_inserted_or_updated():
    at, later = datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 11, 2, tzinfo=UTC)
    ids = rows_insert(
        table=Profile._meta.db_table, columns=[("key", "text")], rows=[("use_a",), ("use_b",)], returning="id",
        constants=[("created_at", "timestamptz", at), ("updated_at", "timestamptz", at), ("traits", "jsonb", {"x": 1}),
                   ("trait_meta", "jsonb", {}), ("merge_count", "int4", 0)],
    )  # fmt: skip
    assert list(Profile.objects.filter(id__in=ids).order_by("id").values_list("key", "traits", "created_at")) == [
        ("use_a", {"x": 1}, at), ("use_b", {"x": 1}, at),
    ]  # fmt: skip
    rows_update(
        table=Profile._meta.db_table, columns=[("merge_count", "int4")], rows=[(ids[0], 3), (ids[1], 4)],
        constants=[("updated_at", "timestamptz", later), ("last_seen_at", "timestamptz", later)],
        set_sql={"last_seen_at": "COALESCE({old}, {new})"},
    )  # fmt: skip
    assert list(Profile.objects.filter(id__in=ids).order_by("id").values_list("merge_count", "updated_at")) == [
        (3, later), (4, later),
    ]  # fmt: skip
    keep_first = {"last_seen_at": "COALESCE({old}, {new})"}
    rows_update(table=Profile._meta.db_table, columns=[], rows=[(ids[0],)],
                constants=[("last_seen_at", "timestamptz", at)], set_sql=keep_first)  # fmt: skip
    assert Profile.objects.get(id=ids[0]).last_seen_at == later  # COALESCE kept the first


@pytest.mark.django_db
def test_events_are_written_with_the_time_they_were_processed(post, source):
    batch = [{"type": "track", "anonymousId": "null", "event": "Blocked only"}, {"type": "page", "anonymousId": "a1"}]
    post("/v1/batch", {"batch": batch}, key=source.write_key, process=False)
    at = datetime.now(UTC).replace(microsecond=0) + timedelta(hours=1)  # after it was received
    assert batches_resolve(batch_ids=[EventBatch.objects.get().id], processed_at=at).processed == 2
    blocked, page = Event.objects.order_by("id")
    assert (blocked.processed_at, page.processed_at) == (at, at)
    assert blocked.profile is None and page.profile is not None  # no usable identifier: stored without a profile
