"""The pure core: validation and normalisation of Segment messages, with no database."""

from __future__ import annotations

import gzip
from datetime import UTC, datetime, timedelta

import orjson
import pytest

from ingest.messages import (
    MAX_MESSAGE_BYTES,
    MAX_REQUEST_BYTES,
    BatchDefaults,
    BodyError,
    MessageError,
    decode_body,
    normalize,
    parse_json,
    split_batch,
)

NOW = datetime(2026, 11, 22, 12, 0, 0, tzinfo=UTC)


def norm(item: dict, **kw):
    return normalize(item, source_id=1, received_at=NOW, **kw)


@pytest.mark.parametrize(
    ("item", "code"),
    [
        ({"type": "track", "event": "x"}, "missing_identity"),
        ({"type": "track", "userId": "", "anonymousId": None, "event": "x"}, "missing_identity"),
        ({"type": "track", "userId": "u"}, "missing_event"),
        ({"type": "track", "userId": "u", "event": ""}, "missing_event"),
        ({"type": "group", "userId": "u"}, "missing_group_id"),
        ({"type": "alias", "userId": "u"}, "missing_previous_id"),
        ({"type": "purchase", "userId": "u"}, "invalid_type"),
        ({"userId": "u"}, "invalid_type"),
        ({"type": "track", "userId": "u", "event": "x", "timestamp": "yesterday"}, "invalid_timestamp"),
        ({"type": "track", "userId": "u", "event": "x", "sentAt": 12}, "invalid_timestamp"),
        ({"type": "track", "userId": "u", "event": "x", "messageId": "m" * 101}, "invalid_message_id"),
        ({"type": "track", "userId": {"id": 1}, "event": "x"}, "invalid_field"),
        ({"type": "track", "userId": "u", "event": "x", "properties": [1]}, "invalid_field"),
        ({"type": "track", "userId": "u", "event": "x", "properties": {"k": "a\u0000b"}}, "invalid_characters"),
        (
            {"type": "track", "userId": "u", "event": "x", "properties": {"k": "v" * MAX_MESSAGE_BYTES}},
            "message_too_large",
        ),
    ],
)
def test_invalid_messages_are_refused_with_a_reason(item, code):
    with pytest.raises(MessageError) as exc:
        norm(item)
    assert exc.value.code == code
    assert exc.value.message


def test_the_endpoint_type_wins_over_the_body():
    event = norm({"type": "identify", "userId": "u", "event": "Clicked"}, type_="track")
    assert event.type == "track"


def test_message_id_is_assigned_when_absent_and_kept_when_given():
    assert len(norm({"type": "page", "anonymousId": "a"}).message_id) == 36
    assert norm({"type": "page", "anonymousId": "a", "messageId": "m-1"}).message_id == "m-1"


def test_numeric_ids_become_strings():
    event = norm({"type": "group", "userId": 42, "groupId": 7.0})
    assert (event.user_id, event.group_id) == ("42", "7")


def test_timestamp_is_corrected_for_client_clock_skew():
    # The device clock runs 1 h fast: it says it sent at 13:00 an event it made at 12:59:50.
    event = norm(
        {"type": "track", "userId": "u", "event": "x",
         "timestamp": "2026-11-22T12:59:50Z", "sentAt": "2026-11-22T13:00:00Z"}
    )  # fmt: skip
    assert event.timestamp == NOW - timedelta(seconds=10)
    assert event.original_timestamp == datetime(2026, 11, 22, 12, 59, 50, tzinfo=UTC)
    assert event.sent_at == datetime(2026, 11, 22, 13, 0, tzinfo=UTC)
    assert event.received_at == NOW


def test_timestamp_without_sent_at_is_the_clients_and_without_either_is_received_at():
    assert norm({"type": "page", "anonymousId": "a", "timestamp": "2026-01-01T00:00:00"}).timestamp == datetime(
        2026, 1, 1, tzinfo=UTC
    )
    assert norm({"type": "page", "anonymousId": "a"}).timestamp == NOW


def test_original_timestamp_field_is_read_too():
    event = norm({"type": "page", "anonymousId": "a", "originalTimestamp": "2026-11-22T11:00:00+01:00"})
    assert event.timestamp == datetime(2026, 11, 22, 10, 0, tzinfo=UTC)


def test_batch_level_sent_at_context_and_integrations_apply_to_each_item():
    defaults = BatchDefaults(
        sent_at="2026-11-22T12:00:10Z",
        context={"library": {"name": "analytics-next"}, "locale": "fr"},
        integrations={"All": True},
    )
    event = norm(
        {"type": "track", "userId": "u", "event": "x", "timestamp": "2026-11-22T12:00:00Z",
         "context": {"locale": "de"}, "integrations": {"Mailjet": False}},
        defaults=defaults,
    )  # fmt: skip
    assert event.timestamp == NOW - timedelta(seconds=10)
    assert event.context == {"library": {"name": "analytics-next"}, "locale": "de"}
    assert event.integrations == {"All": True, "Mailjet": False}


def test_unknown_top_level_fields_are_kept_and_the_write_key_is_not():
    event = norm({"type": "page", "anonymousId": "a", "category": "Docs", "version": 2, "writeKey": "secret"})
    assert event.extra == {"category": "Docs", "version": 2}
    assert norm({"type": "page", "anonymousId": "a"}).extra is None


def test_gzip_bodies_are_inflated():
    assert decode_body(gzip.compress(b'{"a":1}'), "gzip") == b'{"a":1}'


@pytest.mark.parametrize(
    ("raw", "encoding", "code"),
    [
        (b"not gzip", "gzip", "invalid_encoding"),
        (gzip.compress(b"x" * (MAX_REQUEST_BYTES + 10)), "gzip", "payload_too_large"),
        (b"x" * (MAX_REQUEST_BYTES + 1), None, "payload_too_large"),
        (b"{}", "br", "unsupported_encoding"),
        (gzip.compress(b'{"a":1}')[:-6], "gzip", "invalid_encoding"),
    ],
)
def test_bad_bodies_are_refused(raw, encoding, code):
    with pytest.raises(BodyError) as exc:
        decode_body(raw, encoding)
    assert exc.value.code == code


@pytest.mark.parametrize("body", [b"", b"   ", b"{", b"[1]", b'"s"', b"\xff\xfe", b"NaN"])
def test_bodies_that_are_not_a_json_object_are_refused(body):
    with pytest.raises(BodyError) as exc:
        parse_json(body)
    assert exc.value.code == "invalid_json"


def test_a_batch_needs_an_array_of_at_most_2500():
    with pytest.raises(BodyError) as exc:
        split_batch({"batch": {}})
    assert exc.value.code == "invalid_batch"
    with pytest.raises(BodyError) as exc:
        split_batch({"batch": [{}] * 2501})
    assert exc.value.code == "batch_too_large"
    items, defaults = split_batch(orjson.loads(b'{"batch":[{}],"sentAt":"s","context":{"a":1}}'))
    assert items == [{}] and defaults == BatchDefaults(sent_at="s", context={"a": 1})
