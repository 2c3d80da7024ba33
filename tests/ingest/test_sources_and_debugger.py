"""Sources (admin and command), and the ingest debugger: visible, counted and bounded."""

from __future__ import annotations

from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone

from ingest.debugger import debugger_trim
from ingest.models import IngestCounter, RejectedMessage, Source
from ingest.tasks import sweep_unprocessed
from profiles.models import Event, EventBatch

pytestmark = pytest.mark.django_db


def test_create_source_prints_the_generated_key_last():
    out = StringIO()
    call_command("create_source", "Website", stdout=out, stderr=StringIO())
    key = out.getvalue().strip().splitlines()[-1]
    source = Source.objects.get(name="Website")
    assert key == source.write_key and len(key) >= 32
    assert (source.kind, source.enabled) == ("http", True)


def test_create_source_with_a_given_key_and_again_is_idempotent():
    for _ in range(2):
        out = StringIO()
        call_command("create_source", "App", "--write-key", "k-123", stdout=out, stderr=StringIO())
        assert out.getvalue().strip().splitlines()[-1] == "k-123"
    assert Source.objects.count() == 1
    with pytest.raises(CommandError):
        call_command("create_source", "App", "--write-key", "other", stdout=StringIO(), stderr=StringIO())


def test_sources_get_distinct_secret_keys():
    a, b = Source.objects.create(name="a"), Source.objects.create(name="b")
    assert a.write_key != b.write_key and a.signing_secret != b.signing_secret


def test_admin_creates_a_source_with_a_generated_key(admin_client):
    response = admin_client.post(
        "/admin/ingest/source/add/", {"name": "Shop", "kind": "http", "enabled": "on", "allowed_redirect_domains": ""}
    )
    assert response.status_code == 302, response.content
    assert len(Source.objects.get(name="Shop").write_key) >= 32


def test_debugger_shows_counters_and_recent_messages(admin_client, post, source):
    post("/v1/batch", {"batch": [{"type": "track", "userId": "u1", "event": "Signed Up", "messageId": "m1"},
                                 {"type": "track", "userId": "u1"}]}, key=source.write_key)  # fmt: skip
    post("/v1/track", {"userId": "u1", "event": "Signed Up", "messageId": "m1"}, key=source.write_key)
    post("/v1/track", {"userId": "u1", "event": "x"}, key="wrong-key")

    overview = admin_client.get("/admin/ingest/source/debugger/")
    assert overview.status_code == 200
    row = overview.context["rows"][0]
    assert (row.accepted_24h, row.duplicates_24h, row.rejected_24h) == (1, 1, 1)

    page = admin_client.get(f"/admin/ingest/source/{source.pk}/debugger/")
    html = page.content.decode()
    assert "missing_event" in html and "A track call needs an `event` name." in html
    assert "Signed Up" in html and "m1" in html
    assert "No accepted message waits for the pipeline." in html

    post("/v1/track", {"userId": "u2", "event": "Waiting"}, key=source.write_key, process=False)
    waiting = admin_client.get(f"/admin/ingest/source/{source.pk}/debugger/").content.decode()
    assert "1 accepted message waits for the pipeline, the oldest received 0" in waiting

    unknown = admin_client.get("/admin/ingest/source/unknown/debugger/").content.decode()
    assert "Unknown or disabled write key." in unknown


def test_debugger_needs_staff(client, source):
    assert client.get("/admin/ingest/source/debugger/").status_code == 302


def test_trim_keeps_the_newest_rejections_per_source(source):
    other = Source.objects.create(name="Other")
    now = timezone.now()
    for owner in (source, other, None):
        RejectedMessage.objects.bulk_create(
            RejectedMessage(source=owner, received_at=now - timedelta(seconds=i), endpoint="track", code=f"c{i}",
                            reason="r", payload="{}")
            for i in range(30)
        )  # fmt: skip
    IngestCounter.objects.create(source=source, hour=now - timedelta(days=31), accepted=5)
    IngestCounter.objects.create(source=source, hour=now.replace(minute=0, second=0, microsecond=0), accepted=5)
    assert debugger_trim(keep=10) == 3 * 20 + 1
    for owner in (source, other, None):
        kept = RejectedMessage.objects.filter(source=owner) if owner else RejectedMessage.objects.filter(source=None)
        assert sorted(kept.values_list("code", flat=True)) == sorted(f"c{i}" for i in range(10))
    assert IngestCounter.objects.count() == 1
    assert debugger_trim(keep=10) == 0  # safe to run twice


def test_sweep_hands_stale_batches_to_the_pipeline(post, source):
    """Tasks run inline here; tests/e2e covers a real worker."""
    # As after a crash: accepted, never handed over.
    post("/v1/batch", {"batch": [{"type": "page", "anonymousId": "a", "messageId": f"m{i}"} for i in range(3)]},
         key=source.write_key, process=False)  # fmt: skip
    assert Event.objects.count() == 0 and EventBatch.objects.get().size == 3
    assert sweep_unprocessed() == 0  # too young: its task may still be in flight
    EventBatch.objects.update(received_at=timezone.now() - timedelta(minutes=10))
    assert sweep_unprocessed() == 1
    assert not EventBatch.objects.exists()
    assert Event.objects.filter(processed_at__isnull=False, profile__isnull=False).count() == 3  # resolved by the sweep


def test_the_pipeline_counts_every_event_it_processed_once(post, source):
    """Resolved events and events with no usable identifier both count; a rerun counts none."""
    from ingest.pipeline import events_process

    post("/v1/batch", {"batch": [{"type": "page", "anonymousId": "a1"}, {"type": "page", "anonymousId": "null"}]},
         key=source.write_key, process=False)  # fmt: skip
    batches = list(EventBatch.objects.values_list("id", flat=True))
    assert events_process(batch_ids=batches).processed == 2
    assert events_process(batch_ids=batches).processed == 0
    assert Event.objects.filter(processed_at__isnull=False).count() == 2
    assert Event.objects.filter(profile__isnull=True).count() == 1  # no usable identifier: stored without one
