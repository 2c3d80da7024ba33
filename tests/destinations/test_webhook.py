"""The outbox through the webhook adapter, against a real local HTTP sink: what the receiver
sees, retries, discards, dead rows and replay, order per person, a killed worker."""

from __future__ import annotations

import hashlib
import hmac
from datetime import timedelta

import pytest
from django.db import transaction
from django.utils import timezone

from destinations.adapters.webhook import WebhookAdapter
from destinations.delivery import LEASE, destination_drain
from destinations.models import Delivery, DeliveryDay, Destination
from destinations.outbox import Outgoing, deliveries_enqueue
from destinations.services import deliveries_replay, destination_create
from tests.destinations.standins import Failure

pytestmark = pytest.mark.django_db


def entry(key: str, person: str, value: bool = True, n: int = 0) -> Outgoing:
    return Outgoing(kind="audience", subject=key, person=person, message={
        "type": "identify", "messageId": f"m-{person}-{key}-{value}-{n}", "userId": person,
        "traits": {key: value, "email": f"{person}@example.com"},
        "context": {"personas": {"computation_class": "audience", "computation_key": key}},
    })  # fmt: skip


def bodies(sink) -> list[dict]:
    return [r.json() for r in sink.requests_to("^/hook")]


def test_a_message_reaches_the_webhook_signed_as_segment_signs(webhook, sink, drain):
    with transaction.atomic():
        deliveries_enqueue(messages=[entry("vip", "u1")])
    drain(webhook)
    [got] = sink.requests_to("^/hook")
    assert got.headers["user-agent"] == "Segment.io/1.0"
    assert got.headers["content-type"] == "application/json"
    assert got.headers["x-signature"] == hmac.new(b"s3cret", got.body, hashlib.sha1).hexdigest()
    assert got.json()["messageId"] == "m-u1-vip-True-0" and got.json()["traits"]["vip"] is True
    row = Delivery.objects.get()
    assert (row.status, row.attempts, row.status_code) == ("delivered", 1, 200)
    assert DeliveryDay.objects.get(destination=webhook, status="delivered").count == 1


def test_a_rolled_back_change_owes_nothing(webhook, sink, drain):
    with pytest.raises(RuntimeError), transaction.atomic():
        deliveries_enqueue(messages=[entry("vip", "u1")])
        raise RuntimeError("the membership change failed")
    drain(webhook)
    assert Delivery.objects.count() == 0 and sink.received == []


def test_the_same_message_is_owed_once(webhook, sink, drain):
    deliveries_enqueue(messages=[entry("vip", "u1")])
    deliveries_enqueue(messages=[entry("vip", "u1")])
    drain(webhook)
    assert len(bodies(sink)) == 1


def test_5xx_and_429_are_retried_with_the_same_message_id_honouring_retry_after(webhook, sink, drain):
    deliveries_enqueue(messages=[entry("vip", "u1")])
    sink.fail(1, 503, body=b"down")
    drain(webhook)
    row = Delivery.objects.get()
    wait = (row.next_attempt_at - timezone.now()).total_seconds()
    assert row.status == "pending" and row.attempts == 1 and 0.5 <= wait <= 3.5  # first retry within seconds
    assert "503" in row.reason and row.response.startswith("503 down")
    assert Destination.objects.get().last_error.endswith("answered 503")
    drain(webhook)  # paused: not due yet
    assert len(sink.received) == 1
    sink.fail(1, 429, headers={"Retry-After": "120"})
    drain(webhook, due_now=True)
    row.refresh_from_db()
    assert 119 <= (row.next_attempt_at - timezone.now()).total_seconds() <= 122
    drain(webhook, due_now=True)
    row.refresh_from_db()
    assert (row.status, row.attempts) == ("delivered", 3)
    assert {b["messageId"] for b in bodies(sink)} == {"m-u1-vip-True-0"} and len(bodies(sink)) == 3


def test_other_4xx_are_discarded_with_the_reason_and_response(webhook, sink, drain):
    deliveries_enqueue(messages=[entry("vip", "u1"), entry("vip", "u2")])
    sink.fail(1, 400, body=b'{"error":"bad payload"}')
    drain(webhook)
    first, second = Delivery.objects.order_by("id")
    assert (first.status, first.status_code) == ("discarded", 400)
    assert "answered 400" in first.reason and "bad payload" in first.response
    assert second.status == "delivered"  # a discard does not hold the others


def test_a_timeout_is_retried(webhook, sink, drain, monkeypatch):
    monkeypatch.setattr(WebhookAdapter, "timeout", 0.3)  # 5 s in production
    deliveries_enqueue(messages=[entry("vip", "u1")])
    sink.fail(1, 200, hang=1.0)
    drain(webhook)
    row = Delivery.objects.get()
    assert row.status == "pending" and row.reason.startswith("timeout")


def test_a_slow_receiver_gets_what_fits_in_the_batch_budget_and_the_rest_later(webhook, sink, drain, monkeypatch):
    monkeypatch.setattr("destinations.delivery.ADAPTER_SECONDS", 0.2)
    deliveries_enqueue(messages=[entry("vip", f"u{i}") for i in range(3)])
    sink.always = Failure(200, hang=0.15)
    monkeypatch.setattr("destinations.delivery.DRAIN_SECONDS", 0.0)  # one batch, as a drain near its budget
    destination_drain(destination_id=webhook.pk, budget=0.01)
    statuses = [(r.status, r.attempts) for r in Delivery.objects.order_by("id")]
    assert statuses == [("delivered", 1), ("delivered", 1), ("pending", 0)]  # the third untried, due at once
    sink.always = None
    drain(webhook)
    assert [b["userId"] for b in bodies(sink)] == ["u0", "u1", "u2"]


def test_past_the_window_a_row_is_dead_then_replayed(webhook, sink, drain):
    deliveries_enqueue(messages=[entry("vip", "u1"), entry("vip", "u2")])
    Delivery.objects.update(expires_at=timezone.now() - timedelta(seconds=1))  # enqueued 4 h ago
    sink.always = Failure(500, body=b"still down")
    drain(webhook)
    rows = list(Delivery.objects.order_by("id"))
    assert [r.status for r in rows] == ["dead", "dead"]  # the one tried, and the one that waited
    assert "500" in rows[0].reason and "still down" in rows[0].response
    assert DeliveryDay.objects.get(destination=webhook, status="dead").count == 2
    sink.always = None
    assert deliveries_replay(destination_id=webhook.pk) == 2
    drain(webhook)
    assert [r.status for r in Delivery.objects.order_by("id")] == ["delivered", "delivered"]
    assert [b["messageId"] for b in bodies(sink)][-2:] == ["m-u1-vip-True-0", "m-u2-vip-True-0"]


def test_replaying_one_row(webhook, sink, drain):
    deliveries_enqueue(messages=[entry("vip", "u1")])
    sink.fail(1, 404)
    drain(webhook)
    row = Delivery.objects.get()
    assert row.status == "discarded"
    assert deliveries_replay(destination_id=webhook.pk, delivery_id=row.pk) == 1
    drain(webhook)
    row.refresh_from_db()
    assert row.status == "delivered" and row.attempts == 1


def test_an_exit_never_overtakes_the_entry_it_closes(webhook, sink, drain):
    deliveries_enqueue(messages=[entry("vip", "u1", True), entry("vip", "u2", True)])
    deliveries_enqueue(messages=[entry("vip", "u1", False)])
    sink.fail(1, 500)  # u1's entry fails
    drain(webhook)

    def seen() -> list[tuple[str, bool]]:
        return [(b["userId"], b["traits"]["vip"]) for b in bodies(sink)]

    assert seen() == [("u1", True)]
    Destination.objects.update(paused_until=None)  # the destination's pause is over, u1's backoff is not
    drain(webhook)
    assert seen() == [("u1", True), ("u2", True)]  # u2 is not held up; u1's exit waits behind its entry
    assert Delivery.objects.get(message_id="m-u1-vip-False-0").status == "pending"
    drain(webhook, due_now=True)
    assert seen() == [("u1", True), ("u2", True), ("u1", True), ("u1", False)]


def test_a_worker_killed_mid_delivery_loses_nothing_and_resends_the_same_message(webhook, sink, monkeypatch):
    deliveries_enqueue(messages=[entry("vip", "u1")])

    def killed(*args, **kwargs):
        raise SystemExit("the worker was killed after sending")

    monkeypatch.setattr("destinations.delivery.outcomes_record", killed)
    with pytest.raises(SystemExit):
        destination_drain(destination_id=webhook.pk)
    monkeypatch.undo()
    row = Delivery.objects.get()
    assert row.status == "pending" and len(bodies(sink)) == 1
    destination_drain(destination_id=webhook.pk)  # before the lease ends: not sent again
    assert len(bodies(sink)) == 1
    Delivery.objects.update(next_attempt_at=timezone.now() - timedelta(seconds=1))
    Destination.objects.update(lease_until=timezone.now() - LEASE)
    destination_drain(destination_id=webhook.pk)
    assert [b["messageId"] for b in bodies(sink)] == ["m-u1-vip-True-0"] * 2
    assert Delivery.objects.get().status == "delivered"


def test_a_drain_holding_the_lease_keeps_a_second_one_out(webhook, sink):
    deliveries_enqueue(messages=[entry("vip", "u1")])
    Destination.objects.update(lease_until=timezone.now() + LEASE, lease_owner="another")
    assert destination_drain(destination_id=webhook.pk).claimed is False
    assert sink.received == []


def test_several_urls_delivered_when_any_answers(db, sink, drain):
    dest = destination_create(data={"name": "Two", "kind": "webhook", "audiences": "all",
                                    "settings": {"urls": [f"{sink.url}/hook/a", f"{sink.url}/hook/b"]}})  # fmt: skip
    deliveries_enqueue(messages=[entry("vip", "u1")])
    sink.fail(1, 500)
    drain(dest)
    assert Delivery.objects.get().status == "delivered"
    assert {r.path for r in sink.received} == {"/hook/a", "/hook/b"}
    assert "x-signature" not in sink.received[0].headers  # no secret, no signature


def test_a_failing_destination_does_not_hold_up_another(webhook, sink, drain):
    from tests.destinations.standins import Sink

    bad = Sink()
    try:
        bad.always = Failure(500)
        failing = destination_create(data={"name": "Bad", "kind": "webhook", "audiences": "all",
                                           "settings": {"urls": [f"{bad.url}/hook"]}})  # fmt: skip
        deliveries_enqueue(messages=[entry("vip", f"u{i}") for i in range(5)])
        drain(failing)
        drain(webhook)
        assert Delivery.objects.filter(destination=webhook, status="delivered").count() == 5
        assert len(bad.received) == 1  # the failing one paused after one try
        assert Delivery.objects.filter(destination=failing, status="pending").count() == 5
    finally:
        bad.close()


def test_a_disabled_destination_is_owed_nothing(webhook, sink):
    Destination.objects.update(enabled=False)
    assert deliveries_enqueue(messages=[entry("vip", "u1")]).pending == 0
    assert Delivery.objects.count() == 0


def test_a_subject_no_longer_taken_is_filtered_not_sent(webhook, sink, drain):
    from destinations.services import destination_update

    deliveries_enqueue(messages=[entry("vip", "u1"), entry("churn", "u2")])
    destination_update(destination_id=webhook.pk, data={"audiences": ["churn"]})
    drain(webhook)
    vip, churn = Delivery.objects.order_by("id")
    assert (vip.status, vip.reason) == ("filtered", "not subscribed: the destination stopped taking it")
    assert churn.status == "delivered" and [b["userId"] for b in bodies(sink)] == ["u2"]


def test_old_finished_deliveries_are_pruned_and_their_counts_kept(webhook, sink, drain):
    from destinations.services import deliveries_prune

    deliveries_enqueue(messages=[entry("vip", "u1"), entry("vip", "u2")])
    drain(webhook)
    deliveries_enqueue(messages=[entry("vip", "u3")])  # pending: never pruned, however old
    Delivery.objects.update(created_at=timezone.now() - timedelta(days=31))
    assert deliveries_prune() == 2
    assert list(Delivery.objects.values_list("status", flat=True)) == ["pending"]
    assert DeliveryDay.objects.get(destination=webhook, status="delivered").count == 2


def test_a_drain_asked_for_or_a_paused_destination_is_not_woken_again(
    webhook, sink, django_capture_on_commit_callbacks
):
    from django.core.cache import cache

    from destinations.outbox import wake_mark
    from destinations.tasks import sweep

    cache.set(wake_mark(webhook.pk), 1)  # a drain is queued, not started
    with django_capture_on_commit_callbacks(execute=True):
        deliveries_enqueue(messages=[entry("vip", "u1")])
    assert sink.received == []  # no second task: the queued one will deliver it
    Destination.objects.update(paused_until=timezone.now() + timedelta(minutes=1))
    cache.clear()
    with django_capture_on_commit_callbacks(execute=True):
        deliveries_enqueue(messages=[entry("vip", "u2")])
    assert sink.received == []  # paused: the sweep wakes it when the pause is over
    Destination.objects.update(paused_until=None)
    cache.set(wake_mark(webhook.pk), 1)  # however a lost task left its mark
    sweep()
    assert [b["userId"] for b in bodies(sink)] == ["u1", "u2"]
