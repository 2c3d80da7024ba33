"""The tracking API through HTTP: endpoints, bodies, auth, limits, answers, storage."""

from __future__ import annotations

import gzip
from datetime import UTC, datetime

import orjson
import pytest

from ingest.models import IngestCounter, RejectedMessage, Source
from profiles.models import Event, EventBatch
from tests.conftest import basic_auth

pytestmark = pytest.mark.django_db


def track(**fields):
    return {"userId": "u1", "event": "Signed Up", **fields}


@pytest.mark.parametrize(
    ("path", "body", "stored_type"),
    [
        ("/v1/identify", {"userId": "u1", "traits": {"email": "a@b.co"}}, "identify"),
        ("/v1/track", track(), "track"),
        ("/v1/page", {"anonymousId": "a1", "name": "Home"}, "page"),
        ("/v1/screen", {"anonymousId": "a1", "name": "Feed"}, "screen"),
        ("/v1/group", {"userId": "u1", "groupId": "g1"}, "group"),
        ("/v1/alias", {"userId": "u1", "previousId": "a1"}, "alias"),
        ("/v1/i", {"userId": "u1", "type": "identify"}, "identify"),
        ("/v1/t", track(type="track"), "track"),
        ("/v1/p", {"anonymousId": "a1", "type": "page"}, "page"),
        ("/v1/s", {"anonymousId": "a1", "type": "screen"}, "screen"),
        ("/v1/g", {"userId": "u1", "groupId": "g1", "type": "group"}, "group"),
        ("/v1/a", {"userId": "u1", "previousId": "a1", "type": "alias"}, "alias"),
    ],
)
def test_every_endpoint_stores_its_type(post, source, path, body, stored_type):
    response = post(path, body, key=source.write_key)
    assert response.status_code == 200, response.content
    assert response.json() == {"success": True}
    assert list(Event.objects.values_list("type", "source_id")) == [(stored_type, source.pk)]


@pytest.mark.parametrize("path", ["/v1/batch", "/v1/import", "/v1/b"])
def test_batch_endpoints_store_every_item(post, source, path):
    batch = [track(messageId="m1"), {"type": "page", "anonymousId": "a", "messageId": "m2"}]
    batch[0]["type"] = "track"
    response = post(path, {"batch": batch}, key=source.write_key)
    assert response.status_code == 200 and response.json() == {"success": True}
    assert sorted(Event.objects.values_list("message_id", flat=True)) == ["m1", "m2"]


def test_stored_fields_match_what_was_sent(post, source):
    body = {
        "userId": "u1", "anonymousId": "a1", "event": "Order Completed", "messageId": "msg-1",
        "properties": {"revenue": 12.5, "products": [{"sku": "x"}]}, "context": {"ip": "1.2.3.4"},
        "integrations": {"All": False}, "timestamp": "2026-11-01T10:00:00Z", "sentAt": "2026-11-01T10:00:00Z",
        "version": 2,
    }  # fmt: skip
    assert post("/v1/track", body, key=source.write_key).status_code == 200
    e = Event.objects.get()
    assert (e.message_id, e.event, e.user_id, e.anonymous_id) == ("msg-1", "Order Completed", "u1", "a1")
    assert e.properties == body["properties"] and e.context == {"ip": "1.2.3.4"}
    assert e.integrations == {"All": False} and e.extra == {"version": 2}
    assert e.original_timestamp == datetime(2026, 11, 1, 10, tzinfo=UTC)
    assert abs((e.timestamp - e.received_at).total_seconds()) < 1  # sent as it happened
    assert e.sent_at == datetime(2026, 11, 1, 10, tzinfo=UTC) and e.group_id is None and e.previous_id is None
    assert e.profile is not None and e.processed_at >= e.received_at  # written once, resolved


def test_text_plain_body_with_write_key_inside_is_accepted(post, source):
    """analytics.js posts text/plain to avoid a CORS preflight, with the key in the body."""
    response = post("/v1/t", {**track(), "writeKey": source.write_key}, content_type="text/plain")
    assert response.status_code == 200
    assert Event.objects.count() == 1


def test_gzip_body(post, source):
    body = gzip.compress(orjson.dumps({"batch": [{**track(), "type": "track"}]}))
    response = post("/v1/batch", body, key=source.write_key, headers={"Content-Encoding": "gzip"})
    assert response.status_code == 200
    assert Event.objects.count() == 1


def test_basic_auth_without_the_trailing_colon(client, source):
    response = client.post(
        "/v1/track", orjson.dumps(track()), content_type="application/json",
        headers={"Authorization": basic_auth(source.write_key, colon=False)},
    )  # fmt: skip
    assert response.status_code == 200


def test_per_item_write_keys_route_items_to_their_sources(post, source):
    other = Source.objects.create(name="App")
    batch = [{**track(messageId="same"), "type": "track"}, {**track(messageId="same"), "type": "track",
             "writeKey": other.write_key}]  # fmt: skip
    assert post("/v1/batch", {"batch": batch, "writeKey": source.write_key}).status_code == 200
    assert sorted(Event.objects.values_list("source_id", flat=True)) == sorted([source.pk, other.pk])


def test_batch_items_authenticated_only_by_their_own_keys(post, source):
    assert post("/v1/batch", {"batch": [{**track(), "type": "track", "writeKey": source.write_key}]}).status_code == 200
    assert Event.objects.count() == 1


@pytest.mark.parametrize("case", ["missing", "unknown", "disabled", "unknown_in_body"])
def test_unauthenticated_requests_get_401_and_store_nothing(post, source, case):
    if case == "disabled":
        Source.objects.filter(pk=source.pk).update(enabled=False)
    key = {"missing": None, "unknown": "nope", "disabled": source.write_key, "unknown_in_body": None}[case]
    body = {**track(), "writeKey": "nope"} if case == "unknown_in_body" else track()
    response = post("/v1/track", body, key=key)
    assert response.status_code == 401
    assert response.json()["code"] == "unauthorized"
    assert Event.objects.count() == 0
    assert RejectedMessage.objects.filter(code="unauthorized", source=None).count() == 1


@pytest.mark.parametrize("key", [None, "nope"])
def test_an_empty_batch_is_still_authenticated(post, source, key):
    assert post("/v1/batch", {"batch": []}, key=key).status_code == 401
    assert post("/v1/batch", {"batch": []}, key=source.write_key).json() == {"success": True}


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b"{not json", "invalid_json"),
        (b"", "invalid_json"),
        (b"[]", "invalid_json"),
        (orjson.dumps(track(properties={"k": "v" * 33_000})), "message_too_large"),
    ],
)
def test_bad_single_calls_get_400_with_code_and_message(post, source, body, code):
    response = post("/v1/track", body, key=source.write_key)
    assert response.status_code == 400
    assert response.json()["code"] == code and response.json()["message"]
    assert Event.objects.count() == 0
    assert RejectedMessage.objects.get().source == source


def test_invalid_single_message_gets_400_and_is_recorded(post, source):
    response = post("/v1/track", {"userId": "u1"}, key=source.write_key)
    assert response.status_code == 400
    assert response.json() == {"code": "missing_event", "message": "A track call needs an `event` name."}
    rejected = RejectedMessage.objects.get()
    assert (rejected.source, rejected.code, rejected.endpoint) == (source, "missing_event", "track")
    assert orjson.loads(rejected.payload) == {"userId": "u1"}


def test_request_over_500_kb_gets_400(post, source):
    batch = [{**track(messageId=str(i), properties={"pad": "x" * 20_000}), "type": "track"} for i in range(26)]
    response = post("/v1/batch", {"batch": batch}, key=source.write_key)
    assert response.status_code == 400 and response.json()["code"] == "payload_too_large"
    assert "Exceed payload limit" in response.json()["message"]
    assert Event.objects.count() == 0


def test_batch_over_2500_messages_gets_400(post, source):
    batch = [{"type": "page", "anonymousId": "a"}] * 2501
    response = post("/v1/batch", {"batch": batch}, key=source.write_key)
    assert response.status_code == 400 and response.json()["code"] == "batch_too_large"
    assert Event.objects.count() == 0


def test_batch_of_exactly_2500_is_stored(post, source):
    batch = [{"type": "page", "anonymousId": "a", "messageId": str(i)} for i in range(2500)]
    assert post("/v1/batch", {"batch": batch}, key=source.write_key).status_code == 200
    assert Event.objects.count() == 2500


def test_batch_with_invalid_items_stores_the_rest_and_lists_the_rejected(post, source):
    batch = [
        {"type": "track", "userId": "u1", "event": "Good", "messageId": "ok-1"},
        {"type": "track", "event": "No identity"},
        {"type": "track", "userId": "u1"},
        {"type": "group", "userId": "u1"},
        {"type": "alias", "userId": "u1"},
        {"type": "purchase", "userId": "u1"},
        {"type": "page", "userId": "u1", "timestamp": "not a time"},
        {"type": "page", "userId": "u1", "messageId": "x" * 101},
        {"type": "track", "userId": "u1", "event": "Big", "properties": {"p": "x" * 33_000}},
        "not an object",
        {"type": "page", "anonymousId": "a", "messageId": "ok-2"},
    ]
    response = post("/v1/batch", {"batch": batch}, key=source.write_key)
    assert response.status_code == 200
    body = response.json()
    assert body["success"] is True
    assert [(r["index"], r["code"]) for r in body["rejected"]] == [
        (1, "missing_identity"), (2, "missing_event"), (3, "missing_group_id"), (4, "missing_previous_id"),
        (5, "invalid_type"), (6, "invalid_timestamp"), (7, "invalid_message_id"), (8, "message_too_large"),
        (9, "invalid_message"),
    ]  # fmt: skip
    assert all(r["message"] for r in body["rejected"])
    assert sorted(Event.objects.values_list("message_id", flat=True)) == ["ok-1", "ok-2"]
    assert RejectedMessage.objects.filter(source=source).count() == 9
    counter = IngestCounter.objects.get(source=source)
    assert (counter.accepted, counter.duplicates, counter.rejected) == (2, 0, 9)


def test_rejected_copies_are_truncated(post, source):
    post("/v1/batch", {"batch": [{"type": "track", "userId": "u", "properties": {"p": "x" * 10_000}}]},
         key=source.write_key)  # fmt: skip
    assert len(RejectedMessage.objects.get().payload) <= 2048


def test_replayed_batch_stores_nothing_twice(post, source):
    batch = [{"type": "track", "userId": "u1", "event": "e", "messageId": f"m{i}"} for i in range(5)]
    batch.append(dict(batch[0]))  # a duplicate inside the batch, too
    for _ in range(2):
        assert post("/v1/batch", {"batch": batch}, key=source.write_key).status_code == 200
    assert Event.objects.count() == 5
    counter = IngestCounter.objects.get(source=source)
    assert (counter.accepted, counter.duplicates) == (5, 7)


def test_same_message_id_from_two_sources_is_two_events(post, source):
    other = Source.objects.create(name="App")
    post("/v1/track", track(messageId="shared"), key=source.write_key)
    post("/v1/track", track(messageId="shared"), key=other.write_key)
    assert Event.objects.count() == 2


def test_the_batch_is_handed_to_the_pipeline_after_commit(post, source, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks() as callbacks:
        post("/v1/batch", {"batch": [{**track(), "type": "track"}, {"type": "page", "anonymousId": "a"}]},
             key=source.write_key, process=False)  # fmt: skip
    assert len(callbacks) == 1
    assert Event.objects.count() == 0  # accepted, waiting for the pipeline
    assert list(EventBatch.objects.values_list("source_id", "size")) == [(source.pk, 2)]
    callbacks[0]()  # the worker, after the commit
    assert Event.objects.filter(processed_at__isnull=False).count() == 2
    assert not EventBatch.objects.exists()


def test_a_pure_replay_is_dropped_by_the_pipeline_and_counted(post, source):
    post("/v1/track", track(messageId="once"), key=source.write_key)
    post("/v1/track", track(messageId="once"), key=source.write_key)
    assert Event.objects.count() == 1 and not EventBatch.objects.exists()
    assert list(IngestCounter.objects.values_list("accepted", "duplicates")) == [(1, 1)]


def test_cors_preflight_is_answered_for_any_origin(client):
    response = client.options(
        "/v1/t",
        headers={"Origin": "https://shop.example", "Access-Control-Request-Method": "POST",
                 "Access-Control-Request-Headers": "content-type, authorization"},
    )  # fmt: skip
    assert response.status_code == 200
    assert response["Access-Control-Allow-Origin"] == "*"
    assert "authorization" in response["Access-Control-Allow-Headers"]


def test_cross_origin_post_carries_cors_header(post, source):
    response = post("/v1/t", {**track(), "writeKey": source.write_key}, content_type="text/plain",
                    headers={"Origin": "https://shop.example"})  # fmt: skip
    assert response["Access-Control-Allow-Origin"] == "*"


def test_get_on_a_tracking_endpoint_is_405_and_unknown_path_404(client):
    assert client.get("/v1/track").status_code == 405
    response = client.post("/v1/purchase", b"{}", content_type="application/json")
    assert response.status_code == 404 and response.json()["code"] == "not_found"
