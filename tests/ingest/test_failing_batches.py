"""A batch the pipeline cannot resolve (a corrupt row, a bug a message trips) fails alone: the
others of its task are resolved, it is retried by the sweep, and after a few failures it is
parked with its error, where the debugger shows it and an operator can retry it. Parked
batches never keep the sweep from newer orphans."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission, User
from django.utils import timezone

from ingest import tasks
from ingest.pipeline import events_process
from profiles.models import Event, EventBatch
from tests.conftest import PipelineClient

pytestmark = pytest.mark.django_db


def _accepted(post, source, *ids: str) -> int:
    post("/v1/batch", {"batch": [{"type": "page", "anonymousId": "a", "messageId": m} for m in ids]},
         key=source.write_key, process=False)  # fmt: skip
    return EventBatch.objects.order_by("-id").values_list("id", flat=True)[0]


def _corrupt(source, *, minutes_old: int = 0) -> int:
    batch = EventBatch.objects.create(source_id=source.pk, received_at=timezone.now() - timedelta(minutes=minutes_old),
                                      size=1, payload=b"\x00 not a batch")  # fmt: skip
    return batch.pk


def test_a_failing_batch_fails_alone_and_is_parked_after_repeated_failures(post, source, settings):
    good, bad, other = _accepted(post, source, "m1"), _corrupt(source), _accepted(post, source, "m2")
    events_process(batch_ids=[good, bad, other])
    assert set(Event.objects.values_list("message_id", flat=True)) == {"m1", "m2"}  # the others were resolved
    failing = EventBatch.objects.get()
    assert failing.pk == bad and failing.attempts == 1 and failing.parked_at is None
    assert failing.last_error.startswith(("ValueError", "JSONDecodeError", "TypeError"))  # what went wrong
    for _ in range(settings.CDP_BATCH_MAX_ATTEMPTS - 1):
        events_process(batch_ids=[bad])
    failing.refresh_from_db()
    assert failing.attempts == settings.CDP_BATCH_MAX_ATTEMPTS and failing.parked_at is not None
    events_process(batch_ids=[bad])  # a parked batch is not tried again by itself
    failing.refresh_from_db()
    assert failing.attempts == settings.CDP_BATCH_MAX_ATTEMPTS


def test_parked_batches_never_hide_newer_orphans_from_the_sweep(post, source, monkeypatch):
    monkeypatch.setattr(tasks, "SWEEP_LIMIT", 2)
    parked = [_corrupt(source, minutes_old=30) for _ in range(3)]
    EventBatch.objects.filter(pk__in=parked).update(parked_at=timezone.now(), attempts=5)
    orphan = _accepted(post, source, "late")
    EventBatch.objects.filter(pk=orphan).update(received_at=timezone.now() - timedelta(minutes=10))
    assert tasks.sweep_unprocessed() == 1
    assert Event.objects.filter(message_id="late").exists()


def test_the_debugger_shows_a_parked_batch_and_an_operator_retries_it(post, source):
    bad = _corrupt(source)
    EventBatch.objects.filter(pk=bad).update(parked_at=timezone.now(), attempts=5, last_error="ValueError: boom")
    page_url = f"/admin/ingest/source/{source.pk}/debugger/"

    def staff(*perms: str) -> PipelineClient:
        user = User.objects.create_user(f"s{len(perms)}", password="pw-long-enough", is_staff=True)
        user.user_permissions.add(*[Permission.objects.get(codename=p) for p in perms])
        client = PipelineClient()  # runs what the request enqueued, as a worker would
        client.force_login(user)
        return client

    viewer = staff("view_source")
    page = viewer.get(page_url).content.decode()
    assert "ValueError: boom" in page and "Parked" in page
    retry = {"batch": str(bad), "audit_reason": "fixed the worker"}
    assert viewer.post(f"/admin/ingest/source/{source.pk}/debugger/retry/", retry).status_code == 403
    operator = staff("view_source", "change_source")
    operator.post(f"/admin/ingest/source/{source.pk}/debugger/retry/", retry)
    batch = EventBatch.objects.get(pk=bad)
    assert batch.parked_at is None and batch.attempts == 1  # tried again at once: still corrupt, so it failed
    from audit.models import AuditEntry

    assert AuditEntry.objects.get(action="retry_batch").reason == "fixed the worker"
