"""Destinations in the admin: the form per kind (no JSON), the list's last 24 hours, the
delivery log with dead rows and replay, the test message, full syncs, the admin home and the
audience page; view-only staff see and never change; every change audited."""

from __future__ import annotations

import pytest
from django.utils import timezone

from audit.models import AuditEntry
from destinations.models import Delivery, Destination
from destinations.outbox import Outgoing, deliveries_enqueue
from tests.destinations.standins import Failure

pytestmark = pytest.mark.django_db
LIST = "/admin/destinations/destination/"
EDITOR = ("destinations.view_destination", "destinations.add_destination", "destinations.change_destination")


def form(sink, **kw):
    return {"name": "Hook", "kind": "webhook", "enabled": "on", "audience_keys": "vip, churn_risk",
            "urls": f"{sink.url}/hook", "shared_secret": "s3cret", "status_if_new": "subscribed", **kw}  # fmt: skip


def owe(n: int = 1, key: str = "vip") -> None:
    deliveries_enqueue(messages=[Outgoing(kind="audience", subject=key, person=f"p{i}", message={
        "type": "identify", "messageId": f"m{i}", "traits": {key: True, "email": f"p{i}@example.com"}})
        for i in range(n)])  # fmt: skip


def test_a_webhook_made_and_changed_through_the_form_without_json(staff, sink, drain):
    editor = staff(*EDITOR)
    page = editor.get(f"{LIST}add/").content.decode()
    assert 'name="urls"' in page and 'name="lists"' in page and 'name="merge_fields"' in page
    made = editor.post(f"{LIST}add/", form(sink))
    assert made.status_code == 302, made.content.decode()[:3000]
    dest = Destination.objects.get()
    assert dest.audiences == ["churn_risk", "vip"] and dest.settings == {"urls": [f"{sink.url}/hook"],
                                                                         "shared_secret": "s3cret"}  # fmt: skip
    change = editor.get(f"{LIST}{dest.pk}/change/").content.decode()
    assert "s3cret" not in change and "Send a test message" in change and "Delivery log" in change
    refused = editor.post(f"{LIST}{dest.pk}/change/", form(sink, shared_secret="", all_traits="on"))
    assert refused.status_code == 200  # a change asks why
    editor.post(f"{LIST}{dest.pk}/change/", form(sink, shared_secret="", all_traits="on", audit_reason="scores too"))
    dest.refresh_from_db()
    assert dest.traits == "all" and dest.settings["shared_secret"] == "s3cret"  # blank: kept
    assert [(e.action, e.reason) for e in AuditEntry.objects.order_by("id")] == [("add", "created in the admin"),
                                                                                ("change", "scores too")]  # fmt: skip


def test_a_bad_setting_is_shown_on_its_field(staff, sink):
    editor = staff(*EDITOR)
    page = editor.post(f"{LIST}add/", form(sink, urls="ftp://nowhere")).content.decode()
    assert "is not an http:// or https:// URL" in page and Destination.objects.count() == 0
    page = editor.post(f"{LIST}add/", {**form(sink), "kind": "mailjet", "api_key": "k", "api_secret": "s",
                                       "lists": "vip = twelve"}).content.decode()  # fmt: skip
    assert "a Mailjet contact list id" in page


def test_the_list_shows_the_last_24_hours_and_the_log_the_dead_rows(staff, webhook, sink, drain, admin_client):
    owe(3)
    sink.failures = [Failure(200), Failure(400, body=b'{"error":"no such user"}')]
    drain(webhook)
    Delivery.objects.filter(message_id="m2").update(status="dead", reason="retried for the whole window; last: 503",
                                                    finished_at=timezone.now(), response="503 down")  # fmt: skip
    listing = admin_client.get(LIST).content.decode()
    row = listing[listing.index("Hook</a>") :]
    assert "answered 400" in row and "?status=dead" in row
    log = admin_client.get(f"{LIST}{webhook.pk}/deliveries/?status=dead").content.decode()
    assert "message m2," in log and "503 down" in log and "Replay every dead delivery" in log
    assert "message m0," not in log
    everything = admin_client.get(f"{LIST}{webhook.pk}/deliveries/").content.decode()
    assert "no such user" in everything and "POST http" in everything


def test_replay_asks_why_then_sends_again_and_is_audited(staff, webhook, sink, django_capture_on_commit_callbacks):
    owe(1)
    Delivery.objects.update(status="dead", finished_at=timezone.now())
    replayer = staff("destinations.view_destination", "destinations.replay_delivery")
    asked = replayer.post(f"{LIST}{webhook.pk}/replay/", {})
    assert asked.status_code == 200 and "same messageId" in asked.content.decode()
    with django_capture_on_commit_callbacks(execute=True):
        replayer.post(f"{LIST}{webhook.pk}/replay/", {"apply": "1", "audit_reason": "the CRM is back"})
    assert Delivery.objects.get().status == "delivered" and len(sink.received) == 1
    entry = AuditEntry.objects.get(action="replay")
    assert entry.reason == "the CRM is back" and entry.actor == replayer.user


def test_view_only_staff_see_everything_and_change_nothing(staff, webhook, sink):
    owe(1)
    Delivery.objects.update(status="dead", finished_at=timezone.now())
    viewer = staff("destinations.view_destination")
    assert viewer.get(LIST).status_code == 200
    log = viewer.get(f"{LIST}{webhook.pk}/deliveries/").content.decode()
    assert "message m0," in log and "Replay" not in log
    assert "Send a test message" not in viewer.get(f"{LIST}{webhook.pk}/change/").content.decode()
    assert viewer.post(f"{LIST}{webhook.pk}/replay/", {"apply": "1", "audit_reason": "x"}).status_code == 403
    assert viewer.post(f"{LIST}{webhook.pk}/test/").status_code == 403
    viewer.post(f"{LIST}{webhook.pk}/change/", {**form(sink, name="Renamed"), "audit_reason": "x"})
    viewer.post(f"{LIST}{webhook.pk}/delete/", {"post": "yes", "audit_reason": "x"})
    assert Destination.objects.get().name == "Hook" and Delivery.objects.get().status == "dead"
    assert sink.received == [] and not AuditEntry.objects.exists()


def test_send_a_test_message(staff, webhook, sink):
    editor = staff(*EDITOR)
    answer = editor.post(f"{LIST}{webhook.pk}/test/", follow=True).content.decode()
    assert "Test message delivered." in answer
    [got] = sink.received
    assert got.json()["type"] == "identify" and got.json()["traits"]["email"] == "test@example.com"
    sink.always = Failure(401, body=b"bad secret")
    answer = editor.post(f"{LIST}{webhook.pk}/test/", follow=True).content.decode()
    assert "Test message discarded" in answer and "answered 401" in answer


def test_the_home_lists_failing_destinations_with_a_link_to_their_log(webhook, sink, drain, admin_client):
    owe(1)
    sink.always = Failure(500)
    drain(webhook)
    Delivery.objects.update(status="dead", finished_at=timezone.now())
    home = admin_client.get("/admin/").content.decode()
    problems = home[home.index('id="problems"') :]
    assert "Hook" in problems and "answered 500" in problems
    assert f"/admin/destinations/destination/{webhook.pk}/deliveries/" in problems


def test_the_audience_page_lists_its_destinations_and_their_sync(sink, send, define, admin_client):
    from destinations.services import destination_create

    send({"type": "identify", "userId": "ann", "traits": {"email": "ann@example.com"}})
    audience = define(key="vip", rule={"trait": "email", "op": "exists"})
    destination_create(data={"name": "Hook", "kind": "webhook", "audiences": ["vip"],
                             "settings": {"urls": [f"{sink.url}/hook"]}})  # fmt: skip
    page = admin_client.get(f"/admin/audiences/audience/{audience.pk}/page/").content.decode()
    section = page[page.index('id="destinations"') :]
    assert "Hook" in section and ("full sync" in section or "in sync" in section)
