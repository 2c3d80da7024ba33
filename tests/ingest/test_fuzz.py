"""Fuzzing the tracking API: whatever a client sends, the edge answers 200, 400 or 401
(never 500), a 400/401 carries `{"code", "message"}`, and nothing half-valid is stored.

Each request runs in a savepoint that is rolled back afterwards, so every example starts
from an empty event log: the events found after a request are exactly the ones it stored.
"""

from __future__ import annotations

import base64
import gzip
import json
import string
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import orjson
import pytest
from django.db import transaction
from django.test import Client
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from ingest.messages import MAX_MESSAGE_BYTES, MAX_REQUEST_BYTES, MESSAGE_TYPES
from ingest.models import Source
from profiles.models import Event
from tests.conftest import basic_auth

pytestmark = pytest.mark.django_db

FUZZ = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)
FEW = settings(FUZZ, max_examples=25)

SINGLE = {
    "identify": "identify", "track": "track", "page": "page", "screen": "screen", "group": "group",
    "alias": "alias", "i": "identify", "t": "track", "p": "page", "s": "screen", "g": "group", "a": "alias",
}  # fmt: skip
BATCH = ["batch", "b", "import"]
ENDPOINTS = [*SINGLE, *BATCH]
TYPES = sorted(MESSAGE_TYPES)
LONG_AGO = "0001-01-01T00:00:00+14:00"  # year 0 in UTC
FAR_AHEAD = "9999-12-31T23:59:59-14:00"  # year 10000 in UTC


# --- Strategies -----------------------------------------------------------------------------

# Text a valid message may hold: anything but NUL (refused by design) and lone surrogates
# (not representable in UTF-8, so no client can send them). The six characters `\u0000`
# are ordinary text and are stored as sent; the fuzzer sends them too (as well as the
# explicit example of `test_valid_single_calls_are_stored_as_sent`).
clean_text = st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\x00"), max_size=20) | st.builds(
    lambda a, b: a + "\\u0000" + b,
    st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\x00"), max_size=8),
    st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\x00"), max_size=8),
)
any_text = st.text(st.characters(exclude_categories=["Cs"]), max_size=20)
identifiers = st.text(string.ascii_letters + string.digits + "-_.@:", min_size=1, max_size=36)
small_numbers = st.integers(-(2**63), 2**63 - 1) | st.floats(-1e15, 1e15, allow_nan=False)


def json_values(text: st.SearchStrategy[str] = any_text, numbers: Any = None) -> st.SearchStrategy[Any]:
    if numbers is None:
        numbers = st.integers() | st.floats(allow_nan=False, allow_infinity=False)
    scalars = st.none() | st.booleans() | numbers
    return st.recursive(
        scalars | text,
        lambda children: st.lists(children, max_size=4) | st.dictionaries(text, children, max_size=4),
        max_leaves=12,
    )


clean_values = json_values(clean_text, small_numbers)
clean_objects = st.dictionaries(clean_text, clean_values, max_size=5)
offsets = st.sampled_from([UTC, timezone(timedelta(hours=5, minutes=30)), timezone(timedelta(hours=-8))])
recent_instants = st.datetimes(datetime(2000, 1, 1), datetime(2035, 1, 1), timezones=offsets)


@st.composite
def valid_messages(draw: st.DrawFn, kind: str | None = None, message_ids: Any = None) -> dict[str, Any]:
    """A message every Segment library could send, which the edge must store as sent."""
    kind = kind or draw(st.sampled_from(TYPES))
    message: dict[str, Any] = {"type": kind}
    who = draw(st.sampled_from(["userId", "anonymousId", "both"]))
    if who in ("userId", "both"):
        message["userId"] = draw(identifiers)
    if who in ("anonymousId", "both"):
        message["anonymousId"] = draw(identifiers)
    if kind == "track":
        message["event"] = draw(clean_text.filter(bool))
    if kind in ("page", "screen") and draw(st.booleans()):
        message["name"] = draw(clean_text)
    if kind == "group":
        message["groupId"] = draw(identifiers)
    if kind == "alias":
        message["previousId"] = draw(identifiers)
    if kind in ("track", "page", "screen"):
        message["properties"] = draw(clean_objects)
    if kind in ("identify", "group"):
        message["traits"] = draw(clean_objects)
    for field in ("context", "integrations"):
        if draw(st.booleans()):
            message[field] = draw(clean_objects)
    if draw(st.booleans()):
        message["timestamp"] = draw(recent_instants).isoformat()
        if draw(st.booleans()):
            message["sentAt"] = draw(recent_instants).isoformat()
    message_id = draw(message_ids if message_ids is not None else st.none() | identifiers)
    if message_id is not None:
        message["messageId"] = message_id
    return message


def fit(message: dict[str, Any], path: str) -> dict[str, Any]:
    """`message` as a valid single call to /v1/<path>: of the endpoint's type, with the
    fields that type requires."""
    message = {**message, "type": SINGLE[path]}
    required = {"track": ("event", "Clicked"), "group": ("groupId", "g-1"), "alias": ("previousId", "p-1")}
    if message["type"] in required:
        field, value = required[message["type"]]
        message.setdefault(field, value)
    return message


odd_values = (
    json_values()
    | st.sampled_from(["", " ", "\x00", "null", "2024-02-30T25:61:00Z", "1970-01-01", "x" * 101])
    | st.integers(min_value=2**64, max_value=2**80)
)
MUTABLE = ["type", "userId", "anonymousId", "event", "name", "groupId", "previousId", "properties", "traits",
           "context", "integrations", "timestamp", "originalTimestamp", "sentAt", "writeKey"]  # fmt: skip


def has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(has_nul(k) or has_nul(v) for k, v in value.items())
    return isinstance(value, list) and any(has_nul(v) for v in value)


# A NUL in a write key or in a batch's shared fields breaks the edge on PostgreSQL; that is
# `test_nul_outside_messages`'s to show, so the broader fuzzers keep NULs inside messages.
odd_keys = odd_values.filter(lambda value: not has_nul(value))


@st.composite
def mutated_messages(draw: st.DrawFn, fields: list[str] = MUTABLE, message_ids: Any = None) -> dict[str, Any]:
    """A valid message with one to three fields removed or set to a random value."""
    message = draw(valid_messages(message_ids=message_ids))
    for field in draw(st.lists(st.sampled_from(fields), min_size=1, max_size=3, unique=True)):
        if draw(st.booleans()):
            message.pop(field, None)
        else:
            message[field] = draw(odd_keys if field == "writeKey" else odd_values)
    return message


# --- Sending and checking -------------------------------------------------------------------


def encode(value: Any) -> bytes:
    """JSON as a client would send it; unlike orjson it takes integers of any size."""
    return json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode()


@dataclass
class Answer:
    status: int
    body: dict[str, Any]
    events: list[Event]


def send(
    client: Client, path: str, body: bytes, *, key: str | None = None, content_type: str = "application/json",
    headers: dict[str, str] | None = None,
) -> Answer:  # fmt: skip
    """POST `body` to /v1/<path>, check the answer's shape, and return it with the events
    the request stored (read back from the database, then rolled back)."""
    extra = dict(headers or {})
    if key is not None:
        extra["Authorization"] = basic_auth(key)
    with transaction.atomic():
        # The test client re-raises what the view raised: an exception here is a 500.
        response = client.post(f"/v1/{path}", data=body, content_type=content_type, headers=extra)
        try:
            events = list(Event.objects.order_by("id"))
        except Exception as exc:
            raise AssertionError(f"/v1/{path} stored an event that cannot be read back: {exc!r}") from exc
        transaction.set_rollback(True)

    assert response.status_code in (200, 400, 401), (response.status_code, response.content[:300])
    assert response["Content-Type"] == "application/json"
    answer = orjson.loads(response.content)
    assert isinstance(answer, dict)
    if response.status_code == 200:
        assert answer.get("success") is True, answer
        for rejected in answer.get("rejected", []):
            assert isinstance(rejected["index"], int), rejected
            assert isinstance(rejected["code"], str) and rejected["code"], rejected
            assert isinstance(rejected["message"], str) and rejected["message"], rejected
    else:
        assert isinstance(answer.get("code"), str) and answer["code"], answer
        assert isinstance(answer.get("message"), str) and answer["message"], answer
        assert events == [], f"a {response.status_code} answer stored {len(events)} events"
    for event in events:
        assert_complete(event)
    return Answer(response.status_code, answer, events)


def assert_complete(event: Event) -> None:
    """A stored event has everything its type requires."""
    assert event.type in MESSAGE_TYPES, event.type
    assert event.message_id and len(event.message_id) <= 100, event.message_id
    assert event.user_id or event.anonymous_id, "stored without a userId or an anonymousId"
    if event.type == "track":
        assert event.event, "a track stored without an event name"
    if event.type == "group":
        assert event.group_id, "a group call stored without a groupId"
    if event.type == "alias":
        assert event.previous_id, "an alias stored without a previousId"
    for column in (event.properties, event.traits, event.context, event.integrations):
        assert isinstance(column, dict)
    assert event.timestamp is not None and event.received_at is not None


def check_single(answer: Answer, path: str, sent: Any) -> None:
    """A single call stores its one message (200) or nothing (400, 401)."""
    if answer.status != 200:
        return
    assert "rejected" not in answer.body
    assert len(answer.events) == 1, f"a 200 single call stored {len(answer.events)} events"
    event = answer.events[0]
    assert event.type == SINGLE[path]
    if isinstance(sent, dict) and isinstance(sent.get("messageId"), str) and sent["messageId"]:
        assert event.message_id == sent["messageId"]


def check_batch(answer: Answer, items: list[Any]) -> None:
    """A 200 batch stores every item it does not reject, once per message id."""
    if answer.status != 200:
        return
    rejected = [r["index"] for r in answer.body.get("rejected", [])]
    assert len(set(rejected)) == len(rejected), f"an index is rejected twice: {rejected}"
    assert all(0 <= i < len(items) for i in rejected), f"rejected indexes out of range: {rejected}"
    accepted = [item for i, item in enumerate(items) if i not in set(rejected)]
    named = [m["messageId"] for m in accepted if isinstance(m.get("messageId"), str) and m["messageId"]]
    duplicates = len(named) - len(set(named))
    assert len(answer.events) == len(accepted) - duplicates, (
        f"{len(items)} items, {len(rejected)} rejected, {duplicates} repeated ids: "
        f"expected {len(accepted) - duplicates} events, {len(answer.events)} stored"
    )
    stored = {e.message_id: e for e in answer.events}
    for message in accepted:
        message_id = message.get("messageId")
        if isinstance(message_id, str) and message_id:
            assert message_id in stored, f"accepted message {message_id!r} was not stored"
            types = {m.get("type") for m in accepted if m.get("messageId") == message_id}
            assert stored[message_id].type in types


# --- Tests ----------------------------------------------------------------------------------


@FUZZ
@given(path=st.sampled_from(ENDPOINTS), value=json_values())
def test_random_json_values(client: Client, source: Source, path: str, value: Any) -> None:
    answer = send(client, path, encode(value), key=source.write_key)
    if not isinstance(value, dict):
        assert (answer.status, answer.body["code"]) == (400, "invalid_json")
    elif path in SINGLE:
        check_single(answer, path, value)
    elif not isinstance(value.get("batch"), list):
        assert (answer.status, answer.body["code"]) == (400, "invalid_batch")
    else:
        check_batch(answer, value["batch"])


@FUZZ
@given(path=st.sampled_from(list(SINGLE)), message=valid_messages())
@example(path="track", message={"userId": "u1", "event": "Snippet Saved", "properties": {"code": "\\u0000"}})
def test_valid_single_calls_are_stored_as_sent(client: Client, source: Source, path: str, message: dict) -> None:
    message = fit(message, path)

    answer = send(client, path, encode(message), key=source.write_key)

    assert answer.status == 200, answer.body
    (event,) = answer.events
    assert event.source_id == source.id
    assert (event.user_id, event.anonymous_id) == (message.get("userId"), message.get("anonymousId"))
    for column, field in [("event", "event"), ("name", "name"), ("group_id", "groupId"),
                          ("previous_id", "previousId"), ("message_id", "messageId")]:  # fmt: skip
        if field in message:
            assert getattr(event, column) == message[field], column
    for column in ("properties", "traits", "context", "integrations"):
        assert getattr(event, column) == message.get(column, {}), column
    original = datetime.fromisoformat(message["timestamp"]) if "timestamp" in message else None
    sent_at = datetime.fromisoformat(message["sentAt"]) if "sentAt" in message else None
    assert event.original_timestamp == original
    if original and sent_at:
        assert event.timestamp == event.received_at - (sent_at - original)
    else:
        assert event.timestamp == (original or event.received_at)


@FUZZ
@given(path=st.sampled_from(list(SINGLE)), message=mutated_messages([*MUTABLE, "messageId"]))
def test_mutated_single_calls(client: Client, source: Source, path: str, message: dict) -> None:
    answer = send(client, path, encode(message), key=source.write_key)
    check_single(answer, path, message)


# Message ids from a small pool, so that batches repeat them.
pooled_ids = st.none() | st.sampled_from(["m-1", "m-2", "m-3"]) | st.uuids().map(str)
batch_items = valid_messages(message_ids=pooled_ids) | mutated_messages(message_ids=pooled_ids) | json_values()
# `context`, `integrations` and `sentAt` given once for the whole batch.
batch_defaults = st.fixed_dictionaries(
    {},
    optional={
        "context": clean_objects | odd_keys,
        "integrations": clean_objects | odd_keys,
        "sentAt": st.just(datetime.now(UTC).isoformat()) | odd_keys,
    },
)


@FUZZ
@given(
    path=st.sampled_from(BATCH),
    items=st.lists(batch_items, max_size=8),
    defaults=batch_defaults,
)
@example(path="batch", items=[{"type": [], "userId": "u1"}], defaults={})
@example(path="batch", items=[{"type": {"track": True}, "userId": "u1", "event": "e"}], defaults={})
def test_mutated_batches(client: Client, source: Source, path: str, items: list, defaults: dict) -> None:
    answer = send(client, path, encode({**defaults, "batch": items}), key=source.write_key)
    check_batch(answer, items)


@FUZZ
@given(
    path=st.sampled_from(ENDPOINTS),
    data=st.binary(max_size=300) | st.binary(max_size=40).map(lambda b: b'{"userId":"u","event":"' + b),
    content_type=st.sampled_from(["application/json", "text/plain", "text/plain;charset=UTF-8", "x/y"]),
)
def test_random_bytes(client: Client, source: Source, path: str, data: bytes, content_type: str) -> None:
    answer = send(client, path, data, key=source.write_key, content_type=content_type)
    if path in SINGLE:
        check_single(answer, path, None)


@FUZZ
@given(path=st.sampled_from(ENDPOINTS), message=valid_messages(), cut=st.floats(0, 1, exclude_max=True))
def test_truncated_json_is_refused_whole(client: Client, source: Source, path: str, message: dict, cut: float) -> None:
    full = encode({"batch": [message]} if path in BATCH else message)
    answer = send(client, path, full[: int(len(full) * cut)], key=source.write_key)
    assert (answer.status, answer.body["code"]) == (400, "invalid_json")


@FUZZ
@given(
    path=st.sampled_from(ENDPOINTS),
    case=st.sampled_from(["message", "random bytes", "not gzip", "truncated", "trailing garbage"]),
    message=valid_messages(),
    data=st.binary(max_size=200),
)
def test_gzip_bodies(client: Client, source: Source, path: str, case: str, message: dict, data: bytes) -> None:
    message = {"batch": [message]} if path in BATCH else fit(message, path)
    plain = encode(message)
    body = {
        "message": gzip.compress(plain),
        "random bytes": gzip.compress(data),
        "not gzip": data,
        "truncated": gzip.compress(plain)[: max(0, len(gzip.compress(plain)) - 1 - len(data) % 12)],
        "trailing garbage": gzip.compress(plain) + data,
    }[case]
    answer = send(client, path, body, key=source.write_key, headers={"Content-Encoding": "gzip"})
    if case in ("message", "trailing garbage"):  # what follows the gzip stream is ignored
        assert answer.status == 200 and len(answer.events) == 1, answer.body
    elif case == "truncated":
        assert (answer.status, answer.body["code"]) == (400, "invalid_encoding")
    elif case == "not gzip" and not data.startswith(b"\x1f\x8b"):
        assert answer.status == 400 and answer.body["code"] in ("invalid_encoding", "invalid_json"), answer.body
    if path in SINGLE:
        check_single(answer, path, message if case in ("message", "trailing garbage") else None)


def padded(size: int, char: str, **fields: Any) -> dict[str, Any]:
    """A track message whose compact JSON is exactly `size` bytes (give or take one
    multi-byte character), padded with `char` in a property."""
    message = {"type": "track", "userId": "u1", "event": "Big", **fields, "properties": {"pad": ""}}
    room = size - len(orjson.dumps(message))
    message["properties"]["pad"] = char * max(0, room // len(char.encode()))
    return message


@FEW
@given(
    path=st.sampled_from(["track", "t", "batch"]),
    size=st.integers(MAX_MESSAGE_BYTES - 64, MAX_MESSAGE_BYTES + 64),
    char=st.sampled_from(["x", "é", "€", "😀"]),
)
@example(path="track", size=MAX_MESSAGE_BYTES, char="x")
@example(path="track", size=MAX_MESSAGE_BYTES + 1, char="x")
def test_messages_near_32_kb(client: Client, source: Source, path: str, size: int, char: str) -> None:
    message = padded(size, char)
    size = len(orjson.dumps(message))
    small = {"type": "identify", "userId": "u2"}
    body = orjson.dumps({"batch": [small, message]} if path == "batch" else message)

    answer = send(client, path, body, key=source.write_key)

    if size <= MAX_MESSAGE_BYTES:
        assert answer.status == 200 and "rejected" not in answer.body, answer.body
        assert [e.type for e in answer.events][-1] == "track"
    elif path == "batch":
        (rejected,) = answer.body["rejected"]
        assert (rejected["index"], rejected["code"]) == (1, "message_too_large"), rejected
        assert [e.type for e in answer.events] == ["identify"]
    else:
        assert (answer.status, answer.body["code"]) == (400, "message_too_large")


@settings(FUZZ, max_examples=12)
@given(size=st.integers(MAX_REQUEST_BYTES - 40, MAX_REQUEST_BYTES + 40), gzipped=st.booleans())
@example(size=MAX_REQUEST_BYTES, gzipped=False)
@example(size=MAX_REQUEST_BYTES + 1, gzipped=True)
def test_requests_near_500_kb(client: Client, source: Source, size: int, gzipped: bool) -> None:
    # 17 messages of 30,000 bytes, and one more padded to bring the body to `size` bytes.
    items = [padded(30_000, "x", messageId=f"m{i}") for i in range(17)]
    items.append(padded(0, "x", messageId="last"))
    items[-1]["properties"]["pad"] = "x" * (size - len(orjson.dumps({"batch": items})))
    body = orjson.dumps({"batch": items})
    assert len(body) == size

    answer = send(client, "batch", gzip.compress(body) if gzipped else body, key=source.write_key,
                  headers={"Content-Encoding": "gzip"} if gzipped else None)  # fmt: skip

    if len(body) <= MAX_REQUEST_BYTES:
        assert answer.status == 200 and len(answer.events) == 18, answer.body
    else:
        assert (answer.status, answer.body["code"]) == (400, "payload_too_large")


nul_texts = st.builds(lambda a, b: a + "\x00" + b, clean_text, clean_text)


@FUZZ
@given(
    path=st.sampled_from(["track", "t", "batch"]),
    message=valid_messages("track"),
    where=st.sampled_from(["userId", "event", "messageId", "property value", "property key", "context"]),
    nul=nul_texts,
)
def test_nul_in_a_message_refuses_that_message(
    client: Client, source: Source, path: str, message: dict, where: str, nul: str
) -> None:
    message = {**message, "userId": message.get("userId", "u1")}
    if where == "property value":
        message["properties"] = {**message["properties"], "note": nul}
    elif where == "property key":
        message["properties"] = {**message["properties"], nul: 1}
    elif where == "context":
        message["context"] = {"page": {"title": nul}}
    else:
        message[where] = nul
    body = encode({"batch": [{"type": "identify", "userId": "u2"}, message]} if path == "batch" else message)

    answer = send(client, path, body, key=source.write_key)

    if path == "batch":
        assert [r["index"] for r in answer.body.get("rejected", [])] == [1], answer.body
        assert [e.type for e in answer.events] == ["identify"]
    else:
        assert answer.status == 400 and answer.events == [], answer.body


@FUZZ
@given(where=st.sampled_from(["batch context", "batch integrations", "body writeKey", "item writeKey",
                              "Authorization"]), nul=nul_texts)  # fmt: skip
@example(where="batch context", nul="\x00")
@example(where="body writeKey", nul="\x00")
@example(where="Authorization", nul="\x00")
def test_nul_outside_messages(client: Client, source: Source, where: str, nul: str) -> None:
    item: dict[str, Any] = {"type": "track", "userId": "u1", "event": "Clicked"}
    body: dict[str, Any] = {"batch": [item]}
    key: str | None = source.write_key
    if where == "batch context":
        body["context"] = {"campaign": {"name": nul}}
    elif where == "batch integrations":
        body["integrations"] = {nul: True}
    elif where == "body writeKey":
        body["writeKey"], key = nul, None
    elif where == "item writeKey":
        item["writeKey"] = nul
    else:
        key = nul

    answer = send(client, "batch", encode(body), key=key)

    if where.startswith("batch "):
        assert answer.status in (200, 400)
    else:  # a key with a NUL in it is no source's key
        assert answer.status == 401 and answer.events == [], answer.body


@FEW
@given(depth=st.integers(1, 1100), where=st.sampled_from(["properties", "context", "batch item"]))
@example(depth=300, where="properties")
@example(depth=300, where="batch item")
@example(depth=253, where="batch item")  # one past the deepest a stored batch can hold: was a 500 (found by the fuzzer)
@example(depth=253, where="properties")
def test_deeply_nested_objects(client: Client, source: Source, depth: int, where: str) -> None:
    nested = b'{"a":' * depth + b"1" + b"}" * depth
    if where == "batch item":
        body = b'{"batch":[{"type":"track","userId":"u1","event":"Deep","properties":' + nested + b"}]}"
        path = "batch"
    else:
        body = b'{"userId":"u1","event":"Deep","' + where.encode() + b'":' + nested + b"}"
        path = "track"

    answer = send(client, path, body, key=source.write_key)

    if answer.status == 200 and not answer.body.get("rejected"):
        (event,) = answer.events
        value = event.properties if where != "context" else event.context
        for _ in range(depth):
            value = value["a"]
        assert value == 1


@FUZZ
@given(
    path=st.sampled_from(["track", "batch"]),
    garbage=st.binary(min_size=1, max_size=8).filter(lambda b: not _is_utf8(b)),
    field=st.sampled_from(["userId", "event", "key"]),
)
def test_invalid_utf8_is_refused(client: Client, source: Source, path: str, garbage: bytes, field: str) -> None:
    strings = {"userId": b"u1", "event": b"Clicked", "key": b"note"}
    strings[field] += garbage
    message = (b'{"type":"track","userId":"%s","event":"%s","properties":{"%s":1}}'
               % (strings["userId"], strings["event"], strings["key"]))  # fmt: skip
    body = b'{"batch":[' + message + b"]}" if path == "batch" else message

    answer = send(client, path, body, key=source.write_key)

    assert (answer.status, answer.body.get("code")) == (400, "invalid_json"), answer.body


def _is_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


@FUZZ
@given(
    path=st.sampled_from(["identify", "group", "batch"]),
    field=st.sampled_from(["userId", "anonymousId", "groupId", "messageId"]),
    number=st.integers(2**53, 2**200) | st.integers(-(2**200), -(2**53)),
)
@example(path="identify", field="userId", number=123456789012345678901234567890)
def test_big_integer_identifiers(client: Client, source: Source, path: str, field: str, number: int) -> None:
    message = {"type": "group", "userId": "u1", "groupId": "g1", field: number}
    if path == "identify":
        message["type"] = "identify"
    answer = send(client, path, encode({"batch": [message]} if path == "batch" else message), key=source.write_key)

    if answer.events:
        (event,) = answer.events
        column = {"userId": "user_id", "anonymousId": "anonymous_id", "groupId": "group_id",
                  "messageId": "message_id"}[field]  # fmt: skip
        # Stored as the number's digits, or refused; never as another number.
        assert getattr(event, column) == str(number), f"{field} {number} was stored as {getattr(event, column)}"


@st.composite
def any_instant(draw: st.DrawFn) -> str:
    edges = st.sampled_from([datetime.min, datetime.max, datetime(1, 1, 1, 12), datetime(9999, 12, 31, 12)])
    when = draw(st.datetimes(datetime.min, datetime.max) | edges)
    offset = timezone(timedelta(minutes=draw(st.integers(-14 * 60, 14 * 60))))
    return draw(st.sampled_from([when.isoformat(), when.replace(tzinfo=offset).isoformat()]))


@FUZZ
@given(path=st.sampled_from(["track", "batch"]), timestamp=any_instant(), sent_at=st.none() | any_instant())
@example(path="track", timestamp=LONG_AGO, sent_at=None)
@example(path="track", timestamp=FAR_AHEAD, sent_at=None)
@example(path="batch", timestamp="9999-12-31T23:59:59", sent_at="9999-12-31T23:59:59")
def test_timestamps_anywhere_in_the_calendar(
    client: Client, source: Source, path: str, timestamp: str, sent_at: str | None
) -> None:
    message = {"type": "track", "userId": "u1", "event": "Clicked", "timestamp": timestamp}
    if sent_at is not None:
        message["sentAt"] = sent_at
    answer = send(client, path, encode({"batch": [message]} if path == "batch" else message), key=source.write_key)

    if answer.events:
        (event,) = answer.events
        original = datetime.fromisoformat(timestamp)
        assert event.original_timestamp == (original if original.tzinfo else original.replace(tzinfo=UTC))


@FUZZ
@given(
    header=st.text(st.characters(max_codepoint=255, exclude_characters="\r\n"), max_size=40)
    | st.builds(lambda s: "Basic " + s, st.text(st.characters(max_codepoint=255, exclude_characters="\r\n")))
    | st.binary(max_size=30).map(lambda b: "Basic " + base64.b64encode(b).decode()),
)
@example(header="Basic é")
def test_authorization_headers(client: Client, source: Source, header: str) -> None:
    message = {"userId": "u1", "event": "Clicked"}
    answer = send(client, "track", encode(message), headers={"Authorization": header})
    # Only the source's own key opens the door, and none of these is it.
    assert answer.status == 401, answer.body
