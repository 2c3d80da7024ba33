"""`/api/v1/destinations` through HTTP: create, read, change, delete; secrets write-only;
the delivery log with its cursor and filter; replay; errors naming the field; write tokens only."""

from __future__ import annotations

import orjson
import pytest

from audit.models import AuditEntry
from destinations.models import Delivery, Destination
from destinations.outbox import Outgoing, deliveries_enqueue
from tests.destinations.standins import Sink

pytestmark = pytest.mark.django_db
URL = "/api/v1/destinations"


@pytest.fixture
def sink():
    s = Sink()
    yield s
    s.close()


def webhook_body(sink, **kw):
    return {"name": "Hook", "kind": "webhook", "audiences": ["vip"], "consent_categories": ["marketing"],
            "settings": {"urls": [f"{sink.url}/hook"], "shared_secret": "s3cret"}, **kw}  # fmt: skip


def test_create_read_change_and_delete_with_secrets_never_shown(api, sink):
    made = api("post", URL, webhook_body(sink))
    assert made.status_code == 201, made.content
    body = made.json()
    assert body["settings"] == {"urls": [f"{sink.url}/hook"]} and "s3cret" not in made.content.decode()
    assert body["audiences"] == ["vip"] and body["last_24h"]["pending"] == 0
    pk = body["id"]
    assert api("get", f"{URL}/{pk}").json()["name"] == "Hook"
    assert [d["name"] for d in api("get", URL).json()["results"]] == ["Hook"]
    changed = api("patch", f"{URL}/{pk}", {"settings": {"urls": [f"{sink.url}/other"]}, "traits": "all"})
    assert changed.status_code == 200 and changed.json()["traits"] == "all"
    assert Destination.objects.get().settings["shared_secret"] == "s3cret"  # left out: kept
    entry = AuditEntry.objects.filter(action="change").get()
    assert entry.changes["traits"] == [[], "all"] and "s3cret" not in orjson.dumps(entry.changes).decode()
    assert api("delete", f"{URL}/{pk}").status_code == 204
    assert api("get", f"{URL}/{pk}").status_code == 404


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"kind": "webhook"}, "name: This field is required."),
        ({"name": "x", "kind": "fax", "settings": {}}, 'kind: "fax" is not a valid choice.'),
        ({"name": "x", "kind": "webhook", "settings": {"urls": ["ftp://x"]}}, "settings.urls[0]: 'ftp://x' is not"),
        ({"name": "x", "kind": "webhook", "settings": {"urls": []}}, "settings.urls: a list of 1 to 5 URLs."),
        ({"name": "x", "kind": "mailchimp", "settings": {"api_key": "nodc", "list_id": "a1"}}, "settings.api_key:"),
        ({"name": "x", "kind": "mailjet", "settings": {"api_key": "k", "api_secret": "s", "lists": {"a": "1"}}},
         "settings.lists.a: a Mailjet contact list id"),
        ({"name": "x", "kind": "mailjet", "events": {"sources": [1]}, "settings": {"api_key": "k", "api_secret": "s"}},
         "events: only a webhook"),
        ({"name": "x", "kind": "webhook", "audiences": "some", "settings": {"urls": ["http://a"]}}, "audiences:"),
        ({"name": "x", "kind": "webhook", "colour": 1, "settings": {}}, "colour: unknown field."),
    ],
)  # fmt: skip
def test_a_bad_body_is_a_400_naming_the_field(api, body, message):
    answer = api("post", URL, body)
    assert answer.status_code == 400
    assert answer.json()["error"]["code"] == "validation_error"
    assert message in answer.json()["error"]["message"]


def test_the_kind_never_changes_and_names_are_unique(api, sink):
    pk = api("post", URL, webhook_body(sink)).json()["id"]
    assert (
        "kind: a destination's kind never changes"
        in api("patch", f"{URL}/{pk}", {"kind": "mailjet"}).json()["error"]["message"]
    )
    assert "exists already" in api("post", URL, webhook_body(sink)).json()["error"]["message"]


def test_a_read_only_token_reads_but_never_writes(api, token, sink):
    assert api("post", URL, webhook_body(sink), token=token).status_code == 403
    assert api("get", URL, token=token).status_code == 200


def test_deliveries_page_by_cursor_filter_by_status_and_replay(api, sink, django_assert_num_queries):
    pk = api("post", URL, webhook_body(sink, audiences="all")).json()["id"]
    sink.fail(1, 400, body=b"no")
    deliveries_enqueue(
        messages=[
            Outgoing(
                kind="audience",
                subject="vip",
                person=f"p{i}",
                message={"type": "identify", "messageId": f"m{i}", "traits": {"vip": True}},
            )
            for i in range(5)
        ]
    )
    from destinations.delivery import destination_drain

    destination_drain(destination_id=pk)
    first = api("get", f"{URL}/{pk}/deliveries?limit=2").json()
    assert [d["message_id"] for d in first["data"]] == ["m4", "m3"] and first["cursor"]["has_more"]
    second = api("get", f"{URL}/{pk}/deliveries?limit=2&next={first['cursor']['next']}").json()
    assert [d["message_id"] for d in second["data"]] == ["m2", "m1"]
    [discarded] = api("get", f"{URL}/{pk}/deliveries?status=discarded").json()["data"]
    assert discarded["message_id"] == "m0" and discarded["status_code"] == 400 and discarded["response"] == "400 no"
    assert api("get", f"{URL}/{pk}/deliveries?status=lost").status_code == 400
    replayed = api("post", f"{URL}/{pk}/replay", {"delivery": discarded["id"]})
    assert replayed.json() == {"replayed": 1}
    assert Delivery.objects.get(message_id="m0").status == "delivered"  # drained after the commit
    assert api("post", f"{URL}/{pk}/replay", {}).json() == {"replayed": 0}  # no dead rows
    assert api("post", f"{URL}/{pk}/replay", {"delivery": 10**9}).status_code == 404
    assert AuditEntry.objects.filter(action="replay").count() == 1
    with django_assert_num_queries(4):  # destinations, their counts, pending rows and syncs (the token: cached)
        api("get", URL)
    api("post", URL, webhook_body(sink, name="Another"))
    with django_assert_num_queries(4):  # as many for two: no query per destination
        assert len(api("get", URL).json()["results"]) == 2
