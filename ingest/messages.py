"""Segment messages in, canonical events out: the pure core of the tracking API.

Nothing here touches the database or the clock; callers pass `received_at`. Every
failure raises `BodyError` (the whole request is refused with 400) or `MessageError`
(one message is refused and reported by its index). Limits follow Segment's HTTP API
(README.md, "Where we differ from Segment"): 32 KB per message, 500 KB per request, 2,500 per batch.
"""

from __future__ import annotations

import re
import uuid
import zlib
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from profiles.services.events import EventIn

MAX_MESSAGE_BYTES = 32 * 1024
MAX_REQUEST_BYTES = 500 * 1024
MAX_BATCH_ITEMS = 2500
MAX_MESSAGE_ID_CHARS = 100

MESSAGE_TYPES = frozenset({"identify", "track", "page", "screen", "group", "alias"})
# The range every store and client library can hold: PostgreSQL's timestamptz holds more,
# but Python (and so every reader of the event) stops at years 1 and 9999.
EARLIEST = datetime(1, 1, 2, tzinfo=UTC)
LATEST = datetime(9999, 12, 30, tzinfo=UTC)
# Integers beyond this are parsed as floats and would come back as other digits.
EXACT_INTEGER = 2**53
# A NUL escape that is not itself an escaped backslash followed by "u0000".
_NUL = re.compile(rb"(?<!\\)(?:\\\\)*\\u0000")

# Top-level fields the event log stores in columns. Anything else a client sends
# (`version`, `channel`, `_metadata`, `category`, …) is kept in `extra`; `writeKey` is a
# credential and is not stored.
_KNOWN_FIELDS = frozenset({
    "type", "messageId", "userId", "anonymousId", "event", "name", "groupId", "previousId",
    "properties", "traits", "context", "integrations", "timestamp", "originalTimestamp",
    "sentAt", "receivedAt", "writeKey",
})  # fmt: skip


class BodyError(Exception):
    """The whole request is refused with 400 `{"code", "message"}`."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class MessageError(Exception):
    """One message is refused; the rest of its batch is stored."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True, slots=True)
class BatchDefaults:
    """Fields given once for a whole batch that apply to each of its items."""

    sent_at: Any = None
    context: Any = None
    integrations: Any = None


# --- Bodies ---------------------------------------------------------------------------------


def decode_body(raw: bytes, content_encoding: str | None) -> bytes:
    """Undo `Content-Encoding: gzip` (or deflate), refusing anything that inflates past
    `MAX_REQUEST_BYTES`, so a small zip bomb cannot take memory."""
    encoding = (content_encoding or "").strip().lower()
    if encoding in ("", "identity"):
        body = raw
    elif encoding in ("gzip", "x-gzip", "deflate"):
        wbits = 47 if encoding != "deflate" else 15  # 47: gzip or zlib header, auto-detected
        try:
            inflater = zlib.decompressobj(wbits)
            body = inflater.decompress(raw, MAX_REQUEST_BYTES + 1)
            if not inflater.eof and len(body) <= MAX_REQUEST_BYTES:
                raise BodyError("invalid_encoding", f"The {encoding} body is truncated.")
        except zlib.error as exc:
            raise BodyError("invalid_encoding", f"The body is not valid {encoding}: {exc}.") from None
    else:
        raise BodyError("unsupported_encoding", f"Content-Encoding {encoding!r} is not supported.")
    if len(body) > MAX_REQUEST_BYTES:
        raise BodyError("payload_too_large", f"Exceed payload limit: the body is over {MAX_REQUEST_BYTES} bytes.")
    return body


def parse_json(body: bytes) -> dict[str, Any]:
    """Parse a JSON object; anything else is a `BodyError`."""
    if not body.strip():
        raise BodyError("invalid_json", "The body is empty.")
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BodyError("invalid_json", f"The body is not valid JSON: {exc}.") from None
    if not isinstance(payload, dict):
        raise BodyError("invalid_json", "The body must be a JSON object.")
    return payload


def split_batch(payload: dict[str, Any]) -> tuple[list[Any], BatchDefaults]:
    """The items of a `/v1/batch` body, and the batch-level fields that apply to each."""
    items = payload.get("batch")
    if not isinstance(items, list):
        raise BodyError("invalid_batch", "A batch body needs a `batch` array.")
    if len(items) > MAX_BATCH_ITEMS:
        raise BodyError(
            "batch_too_large", f"A batch holds at most {MAX_BATCH_ITEMS} messages; this one has {len(items)}."
        )
    defaults = BatchDefaults(
        sent_at=payload.get("sentAt"), context=payload.get("context"), integrations=payload.get("integrations")
    )
    try:
        encode_checked([defaults.sent_at, defaults.context, defaults.integrations])
    except MessageError as exc:
        raise BodyError(exc.code, "Batch-level fields: " + exc.message) from None
    return items, defaults


# --- Messages -------------------------------------------------------------------------------


def _identifier(value: Any, field: str) -> str | None:
    if value is None or value == "":
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise MessageError("invalid_field", f"`{field}` must be a string.")
    if isinstance(value, float) and value.is_integer():
        if abs(value) >= EXACT_INTEGER:
            raise MessageError(
                "invalid_field", f"`{field}` is a number too large to keep exactly; send it as a string."
            )
        return str(int(value))
    return str(value)


def _text(value: Any, field: str) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise MessageError("invalid_field", f"`{field}` must be a string.")
    return str(value)


def _object(value: Any, field: str) -> dict[str, Any]:
    if value is None:
        return {}
    if isinstance(value, dict):
        return value
    raise MessageError("invalid_field", f"`{field}` must be an object.")


def _in_range(value: datetime, field: str) -> datetime:
    if not EARLIEST <= value <= LATEST:
        raise MessageError("invalid_timestamp", f"`{field}` is outside the years 1 to 9999.")
    return value


def parse_timestamp(value: Any, field: str) -> datetime | None:
    """ISO-8601, as every Segment library sends it; a missing zone means UTC."""
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise MessageError("invalid_timestamp", f"`{field}` must be an ISO-8601 string.")
    try:
        parsed = datetime.fromisoformat(value)
        parsed = parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
    except ValueError:
        raise MessageError("invalid_timestamp", f"`{field}` is not an ISO-8601 timestamp: {value[:40]!r}.") from None
    except OverflowError:
        raise MessageError("invalid_timestamp", f"`{field}` is outside the years 1 to 9999.") from None
    return _in_range(parsed, field)


def corrected_timestamp(*, received_at: datetime, sent_at: datetime | None, original: datetime | None) -> datetime:
    """Segment's clock-skew correction: `receivedAt - (sentAt - originalTimestamp)`.

    Without `sentAt` the client's time is taken as it is; without either, `receivedAt`."""
    if original is None:
        return received_at
    if sent_at is None:
        return original
    try:
        return _in_range(received_at - (sent_at - original), "timestamp")
    except OverflowError:
        raise MessageError("invalid_timestamp", "The corrected timestamp is outside the years 1 to 9999.") from None


def encode_checked(value: Any) -> bytes:
    """The JSON of `value`, refusing what the event store cannot hold: NUL characters
    (PostgreSQL text and jsonb reject them) and nesting deeper than orjson writes. A stored
    batch holds each message one level deeper than the message itself (an array in an
    array, `batch_encode`), so the check encodes it at that depth: 253 levels at most."""
    try:
        encoded = orjson.dumps([value])[1:-1]
    except TypeError:
        raise MessageError("invalid_message", "The message is nested too deeply (253 levels at most).") from None
    if b"\\u0000" in encoded and _NUL.search(encoded):  # the regex only when it may match
        raise MessageError("invalid_characters", "The message contains a NUL character (\\u0000).")
    return encoded


def normalize(
    item: Any,
    *,
    source_id: int,
    received_at: datetime,
    type_: str | None = None,
    defaults: BatchDefaults | None = None,
    email_identifies: bool = False,
) -> EventIn:
    """Validate one message and return it as a canonical event.

    `type_` is the endpoint's type for single calls (it wins over the body's); batch items
    carry their own. With `email_identifies` (email providers' webhooks, which know the
    recipient but rarely our ids), an email in `traits` or `context.traits` is identity
    enough. Raises `MessageError` with the first problem found."""
    if not isinstance(item, dict):
        raise MessageError("invalid_message", "A message must be a JSON object.")
    encoded = encode_checked(item)
    if len(encoded) > MAX_MESSAGE_BYTES:
        raise MessageError("message_too_large", f"Exceed payload limit: the message is over {MAX_MESSAGE_BYTES} bytes.")

    kind = type_ or item.get("type")
    if not isinstance(kind, str) or kind not in MESSAGE_TYPES:
        shown = kind if isinstance(kind, str) else orjson.dumps(kind).decode()
        raise MessageError("invalid_type", f"Unknown message type {shown[:40]!r}.")

    user_id = _identifier(item.get("userId"), "userId")
    anonymous_id = _identifier(item.get("anonymousId"), "anonymousId")
    if user_id is None and anonymous_id is None and not (email_identifies and _has_email(item)):
        raise MessageError("missing_identity", "A message needs a userId or an anonymousId.")

    event = _text(item.get("event"), "event")
    if kind == "track" and not event:
        raise MessageError("missing_event", "A track call needs an `event` name.")
    group_id = _identifier(item.get("groupId"), "groupId")
    if kind == "group" and group_id is None:
        raise MessageError("missing_group_id", "A group call needs a `groupId`.")
    previous_id = _identifier(item.get("previousId"), "previousId")
    if kind == "alias" and previous_id is None:
        raise MessageError("missing_previous_id", "An alias call needs a `previousId`.")

    message_id = _identifier(item.get("messageId"), "messageId") or str(uuid.uuid4())
    if len(message_id) > MAX_MESSAGE_ID_CHARS:
        raise MessageError("invalid_message_id", f"`messageId` is over {MAX_MESSAGE_ID_CHARS} characters.")

    defaults = defaults or _NO_DEFAULTS
    original = parse_timestamp(item.get("originalTimestamp") or item.get("timestamp"), "timestamp")
    sent_at = parse_timestamp(item.get("sentAt") or defaults.sent_at, "sentAt")

    context = _object(item.get("context"), "context")
    if defaults.context:
        context = {**_object(defaults.context, "context"), **context}
    integrations = _object(item.get("integrations"), "integrations")
    if defaults.integrations:
        integrations = {**_object(defaults.integrations, "integrations"), **integrations}

    extra = {k: v for k, v in item.items() if k not in _KNOWN_FIELDS} or None
    return EventIn(
        source_id=source_id,
        message_id=message_id,
        type=kind,
        event=event,
        name=_text(item.get("name"), "name"),
        user_id=user_id,
        anonymous_id=anonymous_id,
        group_id=group_id,
        previous_id=previous_id,
        timestamp=corrected_timestamp(received_at=received_at, sent_at=sent_at, original=original),
        original_timestamp=original,
        sent_at=sent_at,
        received_at=received_at,
        properties=_object(item.get("properties"), "properties"),
        traits=_object(item.get("traits"), "traits"),
        context=context,
        integrations=integrations,
        extra=extra,
    )


_NO_DEFAULTS = BatchDefaults()


def _has_email(item: dict[str, Any]) -> bool:
    context = item.get("context")
    holders = (item.get("traits"), context.get("traits") if isinstance(context, dict) else None)
    return any(isinstance(h, dict) and isinstance(h.get("email"), str) and h["email"].strip() for h in holders)
