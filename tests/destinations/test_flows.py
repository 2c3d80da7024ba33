"""From an event at the edge to the destination: audiences' entries and exits, computed
traits, the raw event stream, full syncs, a new email, stored consent. Through the real
pipeline (tasks inline, as a worker would run them) to stand-in servers."""

from __future__ import annotations

import pytest

from destinations.models import Delivery, FullSync
from destinations.services import destination_create, destination_update
from tests.audiences.conftest import track

pytestmark = pytest.mark.django_db
OPENED = {"event": "Email Opened", "window": {"within_days": 180}}


def hook(sink, name="Hook", **data):
    body = {"name": name, "kind": "webhook", "settings": {"urls": [f"{sink.url}/hook"]}, **data}
    return destination_create(data=body)


def received(sink, type_=None):
    return [r.json() for r in sink.requests_to("^/hook") if type_ is None or r.json()["type"] == type_]


def test_entries_and_exits_reach_a_webhook_as_segment_sends_them(
    sink, send, define, django_capture_on_commit_callbacks
):
    dest = hook(sink, audiences=["opened"])
    send({"type": "identify", "userId": "ann", "anonymousId": "a-1", "traits": {"email": "ann@example.com",
                                                                               "plan": "pro"}})  # fmt: skip
    audience = define(key="opened", rule={"all": [OPENED, {"not": {"event": "Order Completed"}}]})
    send(track("ann", "Email Opened", 1))
    identify, entered = received(sink)
    personas = {"computation_class": "audience", "computation_key": "opened", "computation_id": f"aud_{audience.pk}",
                "space_id": "default", "namespace": "spa_default"}  # fmt: skip
    assert identify["type"] == "identify" and identify["traits"] == {"opened": True, "email": "ann@example.com"}
    assert identify["userId"] == "ann" and identify["anonymousId"] == "a-1"
    assert identify["context"]["personas"] == personas
    assert entered["type"] == "track" and entered["event"] == "Audience Entered"
    assert entered["properties"] == {"audience_key": "opened", "opened": True}
    assert entered["context"]["traits"]["email"] == "ann@example.com" and entered["context"]["personas"] == personas
    send(track("ann", "Order Completed", 0))
    _, _, exit_identify, exited = received(sink)
    assert exit_identify["traits"]["opened"] is False and exited["event"] == "Audience Exited"
    assert exited["properties"] == {"audience_key": "opened", "opened": False}
    assert len({m["messageId"] for m in received(sink)}) == 4
    assert set(Delivery.objects.filter(destination=dest).values_list("status", flat=True)) == {"delivered"}


def test_one_message_per_email_and_a_new_email_is_synced_again(sink, send, define):
    hook(sink, audiences="all")
    send({"type": "identify", "userId": "bo", "traits": {"email": "bo@example.com"}})
    define(key="opened", rule=OPENED)
    send(track("bo", "Email Opened", 1))
    assert [m["traits"]["email"] for m in received(sink, "identify")] == ["bo@example.com"]
    send({"type": "identify", "userId": "bo", "traits": {"email": "bo@work.example"}})
    again = received(sink)[2:]
    assert [(m["type"], m.get("event"), m["context"]["traits"]["email"]) for m in again] == [
        ("identify", None, "bo@work.example"),
        ("track", "Audience Entered", "bo@work.example"),
    ]


def test_a_new_destination_gets_a_full_sync_first(sink, send, define, django_capture_on_commit_callbacks):
    send(*[{"type": "identify", "userId": f"u{i}", "traits": {"email": f"u{i}@example.com"}} for i in range(3)])
    send(*[track(f"u{i}", "Email Opened", 1) for i in range(3)])
    define(key="opened", rule=OPENED)
    define(key="other", rule={"event": "Never Happens"})
    with django_capture_on_commit_callbacks(execute=True):
        dest = hook(sink, audiences=["opened"])
    [sync] = FullSync.objects.filter(destination=dest)
    assert (sync.subject, sync.status, sync.done, sync.total, sync.progress) == ("opened", "done", 3, 3, 100)
    assert sorted(m["userId"] for m in received(sink, "identify")) == ["u0", "u1", "u2"]
    assert Delivery.objects.filter(destination=dest, kind="sync", status="delivered").count() == 6
    with django_capture_on_commit_callbacks(execute=True):  # a newly taken audience is synced; the other is not again
        destination_update(destination_id=dest.pk, data={"audiences": ["opened", "other"]})
    assert list(FullSync.objects.filter(destination=dest).values_list("subject", flat=True)) == ["other", "opened"]


def test_a_computed_trait_change_is_an_identify_with_its_personas(sink, send, django_capture_on_commit_callbacks):
    from profiles.computed.services import computed_trait_create

    hook(sink, traits=["orders"])
    send({"type": "identify", "userId": "cy", "traits": {"email": "cy@example.com"}})
    with django_capture_on_commit_callbacks(execute=True):
        trait = computed_trait_create(data={"key": "orders", "type": "counter", "event": "Order Completed"})
    send(track("cy", "Order Completed", 0))
    [identify] = received(sink)
    assert identify["traits"] == {"orders": 1, "email": "cy@example.com"} and identify["userId"] == "cy"
    assert identify["context"]["personas"]["computation_class"] == "trait"
    assert identify["context"]["personas"]["computation_id"] == f"trt_{trait.pk}"


def test_a_webhook_takes_the_raw_events_of_chosen_sources_and_names(sink, send, source):
    hook(sink, events={"sources": [source.pk], "names": ["Order Completed"]})
    send(track("dee", "Order Completed", 0, total=30), track("dee", "Page Viewed", 0),
         {**track("dee", "Order Completed", 0), "integrations": {"All": False}})  # fmt: skip
    [event] = received(sink)
    assert event["event"] == "Order Completed" and event["properties"] == {"total": 30} and event["userId"] == "dee"
    assert Delivery.objects.get(status="filtered").reason == "integrations: All is false"


def test_stored_consent_applies_to_audience_deliveries(sink, send, define):
    hook(sink, name="Ads", audiences="all", consent_categories=["advertising"])
    consent = {"categoryPreferences": {"advertising": False, "analytics": True}}
    send({"type": "identify", "userId": "eve", "traits": {"email": "eve@example.com"}},
         {"type": "track", "userId": "eve", "event": "Segment Consent Preference Updated",
          "context": {"consent": consent}},
         {"type": "identify", "userId": "fay", "traits": {"email": "fay@example.com"}})  # fmt: skip
    define(key="known", rule={"trait": "email", "op": "exists"})
    assert {m["userId"] for m in received(sink)} == {"fay"}  # no stored consent: flows everywhere
    eve = Delivery.objects.filter(status="filtered")
    assert eve.count() == 2 and {r.reason for r in eve} == {"consent: advertising not granted"}
    assert eve[0].message["context"]["consent"] == consent


def test_the_re_engagement_audience_end_to_end_in_mailjet(mailjet, send, define, django_capture_on_commit_callbacks):
    location = {"latitude": 48.87, "longitude": 2.37}
    send({"type": "identify", "userId": "gil", "traits": {"email": "gil@example.com", "plan": "pro",
                                                        "location": location}})  # fmt: skip
    send(track("gil", "Email Opened", 2))
    define(
        key="re_engage", rule={"all": [OPENED, {"not": {"event": "Order Completed", "window": {"within_days": 180}}}]}
    )
    with django_capture_on_commit_callbacks(execute=True):
        destination_create(
            data={
                "name": "Mailjet",
                "kind": "mailjet",
                "audiences": ["re_engage"],
                "settings": {
                    "api_key": "mj-key",
                    "api_secret": "mj-secret",
                    "lists": {"re_engage": 777},
                    "base_url": mailjet.url,
                },
            }
        )
    assert mailjet.lists[777] == {"gil@example.com": True}
    assert mailjet.contacts["gil@example.com"] == {"plan": "pro", "location_latitude": 48.87,
                                                   "location_longitude": 2.37}  # fmt: skip
    send(track("gil", "Order Completed", 0))
    assert mailjet.lists[777] == {}
    assert set(Delivery.objects.filter(message__type="track").values_list("status", "reason")) == {
        ("filtered", "mailjet takes identify calls only")
    }


def test_a_merge_sends_no_second_entry(sink, send, define):
    hook(sink, audiences="all")
    send({"type": "identify", "userId": "ann", "traits": {"email": "ann@example.com"}},
         {"type": "identify", "anonymousId": "phone", "traits": {"email": "ann@phone.example"}})  # fmt: skip
    send(track("ann", "Email Opened", 1), {**track("x", "Email Opened", 1), "userId": None, "anonymousId": "phone"})
    define(key="opened", rule=OPENED, include_anonymous=True)
    assert len(received(sink, "track")) == 2  # each profile entered
    send({"type": "identify", "userId": "ann", "anonymousId": "phone"})  # merges them
    assert len(received(sink, "track")) == 2  # the same person: no entry, no exit, no re-sync
