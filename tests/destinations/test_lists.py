"""Mailjet and Mailchimp against stand-ins that follow their documented contracts."""

from __future__ import annotations

import hashlib
from pathlib import Path

import orjson
import pytest

from destinations.models import Delivery
from destinations.outbox import Outgoing, deliveries_enqueue
from destinations.services import destination_create

pytestmark = pytest.mark.django_db
FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "destinations"


def audience(key: str, email: str, value: bool, traits: dict | None = None, n: int = 0) -> Outgoing:
    return Outgoing(kind="audience", subject=key, person=email, message={
        "type": "identify", "messageId": f"{key}-{email}-{value}-{n}", "userId": email.split("@")[0],
        "traits": {key: value, "email": email},
        "context": {"personas": {"computation_class": "audience", "computation_key": key}, "traits": traits or {}},
    })  # fmt: skip


def trait(key: str, email: str, value) -> Outgoing:
    return Outgoing(kind="trait", subject=key, person=email, message={
        "type": "identify", "messageId": f"t-{key}-{email}-{value}", "traits": {key: value, "email": email},
        "context": {"personas": {"computation_class": "trait", "computation_key": key}},
    })  # fmt: skip


@pytest.fixture
def mj(db, mailjet):
    return destination_create(data={"name": "Mailjet", "kind": "mailjet", "audiences": "all", "traits": "all",
                                    "settings": {"api_key": "mj-key", "api_secret": "mj-secret",
                                                 "lists": {"re_engage": 12345}, "base_url": mailjet.url}})  # fmt: skip


@pytest.fixture
def mc(db, mailchimp):
    return destination_create(data={
        "name": "Mailchimp", "kind": "mailchimp", "audiences": "all", "traits": "all",
        "settings": {"api_key": "mc-key-us6", "list_id": "a6b5da1054", "base_url": mailchimp.url,
                     "merge_fields": {"first_name": "FNAME", "last_name": "LNAME", "plan": "PLAN"}},
    })  # fmt: skip


# --- Mailjet -------------------------------------------------------------------------------


def test_the_re_engagement_audience_lands_in_a_mailjet_list_with_traits_as_properties(mj, mailjet, drain):
    traits = {"plan": "pro", "lifetime_value": 1249.5, "location": {"latitude": 48.8735, "longitude": 2.3716},
              "address": {"geo": {"lat": 1.0}}}  # fmt: skip
    deliveries_enqueue(
        messages=[
            audience("re_engage", "alice.martin@example.com", True, traits),
            audience("re_engage", "bob.nguyen@example.com", True, {"plan": "free"}),
        ]
    )
    drain(mj)
    assert mailjet.lists[12345] == {"alice.martin@example.com": True, "bob.nguyen@example.com": True}
    assert mailjet.contacts["alice.martin@example.com"] == {
        "plan": "pro",
        "lifetime_value": 1249.5,
        "location_latitude": 48.8735,
        "location_longitude": 2.3716,
    }
    assert mailjet.properties == {"plan": "str", "lifetime_value": "float", "location_latitude": "float",
                                  "location_longitude": "float"}  # fmt: skip
    [bulk] = mailjet.requests_to("contactslist/12345/managemanycontacts$")
    sample = orjson.loads((FIXTURES / "mailjet-contactslist-managemanycontacts.json").read_bytes())
    assert bulk.json()["Action"] == sample["Action"] == "addnoforce"
    assert set(bulk.json()["Contacts"][0]) <= set(sample["Contacts"][0])
    assert len(mailjet.requests_to("managemanycontacts/1$")) >= 2  # polled to completion
    alice, bob = Delivery.objects.order_by("id")
    assert alice.status == bob.status == "delivered"
    assert alice.notes == {"dropped": ["address.geo: nested too deep"]}
    metadata = orjson.loads((FIXTURES / "mailjet-contactmetadata-create.json").read_bytes())
    created = [r.json() for r in mailjet.requests_to("contactmetadata$")]
    assert metadata == {"Datatype": "float", "Name": "location_latitude", "NameSpace": "static"}
    assert metadata in created


def test_mailjet_never_resubscribes_and_an_exit_removes(mj, mailjet, drain):
    mailjet.lists[12345] = {"gone@example.com": False}  # unsubscribed at Mailjet
    deliveries_enqueue(
        messages=[audience("re_engage", "gone@example.com", True), audience("re_engage", "stay@example.com", True)]
    )
    drain(mj)
    assert mailjet.lists[12345] == {"gone@example.com": False, "stay@example.com": True}
    deliveries_enqueue(messages=[audience("re_engage", "stay@example.com", False)])
    drain(mj)
    assert mailjet.lists[12345] == {"gone@example.com": False}
    assert mailjet.requests_to("12345/managemanycontacts$")[-1].json()["Action"] == "remove"


def test_mailjet_errors_are_recorded_per_contact(mj, mailjet, drain):
    mailjet.properties["plan"] = "int"  # defined with another type at Mailjet
    deliveries_enqueue(
        messages=[
            audience("re_engage", "a@example.com", True, {"plan": "pro"}),
            audience("re_engage", "b@example.com", True, {"age": 30}),
        ]
    )
    drain(mj)
    a, b = Delivery.objects.order_by("id")
    assert a.status == "discarded" and "Object properties invalid" in a.reason
    assert "Property type does not match definition" in a.response
    assert b.status == "delivered" and mailjet.lists[12345] == {"b@example.com": True}


def test_mailjet_traits_update_properties_and_unmapped_audiences_are_filtered(mj, mailjet, drain):
    deliveries_enqueue(messages=[trait("lead_score", "a@example.com", 82), audience("vip", "a@example.com", True)])
    drain(mj)
    score, vip = Delivery.objects.order_by("id")
    assert score.status == "delivered" and mailjet.contacts["a@example.com"] == {"lead_score": 82}
    assert vip.status == "filtered" and vip.reason == "no Mailjet list set for audience vip"


def test_mailjet_429_is_retried_and_bad_credentials_discarded(mj, mailjet, drain):
    deliveries_enqueue(messages=[audience("re_engage", "a@example.com", True)])
    mailjet.fail(1, 429, headers={"Retry-After": "7"})
    drain(mj)
    row = Delivery.objects.get()
    assert row.status == "pending" and "429" in row.reason
    mailjet.secret = "rotated"
    drain(mj, due_now=True)
    row.refresh_from_db()
    assert row.status == "discarded" and row.status_code == 401 and "authentication" in row.response
    assert "mj-secret" not in row.request  # credentials are never recorded


def test_mailjet_takes_identify_calls_only(mj, mailjet, drain):
    deliveries_enqueue(
        messages=[
            Outgoing(
                kind="audience",
                subject="re_engage",
                person="a",
                message={
                    "type": "track",
                    "event": "Audience Entered",
                    "messageId": "t1",
                    "properties": {"audience_key": "re_engage", "re_engage": True},
                    "context": {"traits": {"email": "a@x.io"}},
                },
            )
        ]
    )
    assert Delivery.objects.get().status == "filtered"
    drain(mj)
    assert mailjet.received == []


# --- Mailchimp -----------------------------------------------------------------------------


def test_a_mailchimp_member_is_upserted_then_tagged_with_the_audience(mc, mailchimp, drain):
    deliveries_enqueue(
        messages=[
            audience(
                "vip", "Alice.Martin@Example.com", True, {"first_name": "Alice", "last_name": "Martin", "city": "Paris"}
            )
        ]
    )
    drain(mc)
    member_hash = hashlib.md5(b"alice.martin@example.com").hexdigest()
    put, tags = mailchimp.received
    assert put.method == "PUT" and put.path == f"/3.0/lists/a6b5da1054/members/{member_hash}"
    sample = orjson.loads((FIXTURES / "mailchimp-member-upsert.json").read_bytes())
    assert put.json() == {"email_address": "Alice.Martin@Example.com", "status_if_new": "subscribed",
                          "merge_fields": {"FNAME": "Alice", "LNAME": "Martin"}}  # fmt: skip
    assert set(put.json()) <= set(sample) and "status" not in put.json()  # never resubscribes
    assert tags.json() == {"tags": [{"name": "vip", "status": "active"}]}
    assert mailchimp.members[member_hash]["tags"] == {"vip"}
    deliveries_enqueue(messages=[audience("vip", "Alice.Martin@Example.com", False)])
    drain(mc)
    assert mailchimp.members[member_hash]["tags"] == set()
    assert mailchimp.received[-1].json() == {"tags": [{"name": "vip", "status": "inactive"}]}
    assert len(mailchimp.requests_to("members")) == 3  # an exit only untags


def test_mailchimp_keeps_an_unsubscribed_member_unsubscribed(mc, mailchimp, drain):
    member_hash = hashlib.md5(b"gone@example.com").hexdigest()
    mailchimp.members[member_hash] = {"email_address": "gone@example.com", "status": "unsubscribed",
                                      "merge_fields": {}, "tags": set()}  # fmt: skip
    deliveries_enqueue(messages=[audience("vip", "gone@example.com", True)])
    drain(mc)
    assert mailchimp.members[member_hash]["status"] == "unsubscribed"


def test_mailchimp_errors_keep_the_detail_and_exits_of_non_members_are_no_failure(mc, mailchimp, drain):
    deliveries_enqueue(
        messages=[
            trait("plan", "a@example.com", "pro"),
            trait("shoe_size", "b@example.com", 42),
            audience("vip", "c@example.com", False),
        ]
    )
    mailchimp.merge_tags.discard("PLAN")
    drain(mc)
    plan, shoe, exit_ = Delivery.objects.order_by("id")
    assert plan.status == "discarded" and "Your merge fields were invalid" in plan.reason
    assert shoe.status == "filtered" and shoe.reason == "no merge field is mapped for these traits"
    assert exit_.status == "delivered" and exit_.reason == "not a member: nothing to untag"


def test_mailchimp_full_syncs_go_through_batches(mc, mailchimp, drain):
    members = [Outgoing(kind="sync", subject="vip", person=f"p{i}", message=audience("vip", f"p{i}@example.com", True,
                        {"first_name": f"P{i}"}).message | {"messageId": f"s{i}"}) for i in range(25)]  # fmt: skip
    members.append(
        Outgoing(
            kind="sync",
            subject="vip",
            person="bad",
            message=audience("vip", "bad@example.com", True, {"first_name": "B"}).message | {"messageId": "s-bad"},
        )
    )
    mailchimp.merge_tags = {"FNAME"}
    members[-1].message["context"]["traits"]["plan"] = "x"  # PLAN is no merge field there: refused
    deliveries_enqueue(messages=members)
    drain(mc)
    assert len(mailchimp.requests_to("^/3.0/batches$")) == 1
    assert not mailchimp.requests_to("^/3.0/lists")  # nothing member by member
    assert len(mailchimp.members) == 25 and all(m["tags"] == {"vip"} for m in mailchimp.members.values())
    bad = Delivery.objects.get(message_id="s-bad")
    assert bad.status == "discarded" and bad.status_code == 400 and "merge fields were invalid" in bad.response
    assert Delivery.objects.filter(status="delivered").count() == 25
    sample = orjson.loads((FIXTURES / "mailchimp-batch-request.json").read_bytes())
    op = mailchimp.requests_to("^/3.0/batches$")[0].json()["operations"][0]
    assert set(op) == set(sample["operations"][0]) and op["path"].startswith("/lists/a6b5da1054/members/")


def test_mailchimp_5xx_is_retried(mc, mailchimp, drain):
    deliveries_enqueue(messages=[audience("vip", "a@example.com", True)])
    mailchimp.fail(1, 503)
    drain(mc)
    assert Delivery.objects.get().status == "pending"
    drain(mc, due_now=True)
    assert Delivery.objects.get().status == "delivered"


def test_the_test_message_reaches_each_list_destination(mc, mj, mailchimp, mailjet):
    from destinations.services import destination_test

    assert destination_test(destination_id=mc.pk).status == "delivered"
    assert mailchimp.members[hashlib.md5(b"test@example.com").hexdigest()]["status"] == "subscribed"
    assert destination_test(destination_id=mj.pk).status == "delivered"
    assert mailjet.contacts["test@example.com"] == {"cdp_test": True}
    mailjet.secret = "wrong"
    failed = destination_test(destination_id=mj.pk)
    assert failed.status == "discarded" and failed.status_code == 401
