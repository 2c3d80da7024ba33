"""The edge's services: authenticate, validate, store, account for every message.

Each entry point (tracking API, pixel, tracked link) ends in `messages_ingest`, which
stores the valid messages in one transaction, records every refused one in the ingest
debugger, and after the commit hands the new batches to the pipeline (`ingest.handoff`:
never on the request's critical section).
"""

from __future__ import annotations

import base64
import logging
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.db import transaction

from ingest import links
from ingest.counters import counters_add
from ingest.handoff import enqueue_pipeline
from ingest.messages import (
    MAX_MESSAGE_BYTES,
    MESSAGE_TYPES,
    BatchDefaults,
    BodyError,
    MessageError,
    decode_body,
    normalize,
    parse_json,
    split_batch,
)
from ingest.models import Source
from ingest.refusals import Refusal, Rejection, refusal_record, refusals_record
from profiles.services.events import EventIn, batch_store, batch_unpark

logger = logging.getLogger(__name__)

__all__ = ["Outcome", "Rejection", "messages_ingest", "refusal_record", "tracking_ingest"]


@dataclass(slots=True)
class Outcome:
    """What the edge answers: an HTTP status and a Segment-shaped JSON body."""

    status: int
    body: dict[str, Any]
    accepted: int = 0  # valid messages, kept for the pipeline (which drops the ones already stored)
    batch_ids: list[int] = field(default_factory=list)
    rejections: list[Rejection] = field(default_factory=list)


# --- Tracking API ---------------------------------------------------------------------------


def tracking_ingest(
    *,
    raw: bytes,
    endpoint: str,
    received_at: datetime,
    header_write_key: str | None = None,
    content_encoding: str | None = None,
    client: str | None = None,
) -> Outcome:
    """Handle one tracking API request. `endpoint` is a message type or `batch`; `client`
    is the caller's address (what the debugger keeps of refusals is capped per address)."""
    try:
        body = decode_body(raw, content_encoding)
        if endpoint != "batch" and len(body) > MAX_MESSAGE_BYTES:
            raise BodyError(
                "message_too_large", f"Exceed payload limit: a message is at most {MAX_MESSAGE_BYTES} bytes."
            )
        payload = parse_json(body)
        if endpoint == "batch":
            items, defaults = split_batch(payload)
        else:
            items, defaults = [payload], None
    except BodyError as exc:
        source = sources_by_key([header_write_key]).get(header_write_key or "")
        refusal_record(source=source, endpoint=endpoint, received_at=received_at, code=exc.code, reason=exc.message,
                       payload=raw, client=client)  # fmt: skip
        return Outcome(400, {"code": exc.code, "message": exc.message})
    body_key = payload.get("writeKey")
    return messages_ingest(
        items=items,
        write_key=header_write_key or (body_key if isinstance(body_key, str) else None),
        endpoint=endpoint,
        received_at=received_at,
        type_=None if endpoint == "batch" else endpoint,
        defaults=defaults,
        client=client,
    )


def write_key_from_authorization(header: str | None) -> str | None:
    """The write key of a `Basic base64(key:)` header; the colon is optional."""
    if not header:
        return None
    scheme, _, credentials = header.partition(" ")
    if scheme.lower() != "basic" or not credentials:
        return None
    try:
        decoded = base64.b64decode(credentials.strip(), validate=False).decode("utf-8")
    except ValueError:  # binascii.Error, UnicodeDecodeError, and non-ASCII input
        return None
    return decoded.partition(":")[0] or None


def sources_by_key(keys: Sequence[str | None]) -> dict[str, Source]:
    """Enabled sources by write key, in one query."""
    # A key with NUL cannot exist (and PostgreSQL refuses it in a query): it is unknown.
    wanted = sorted({k for k in keys if k and "\x00" not in k})
    if not wanted:
        return {}
    # A raw query: the ORM's compilation of this filter was a tenth of a request's CPU.
    marks = ", ".join(["%s"] * len(wanted))
    found = Source.objects.raw(
        f"SELECT * FROM {Source._meta.db_table} WHERE write_key IN ({marks}) AND enabled", wanted
    )
    return {s.write_key: s for s in found}


def messages_ingest(
    *,
    items: Sequence[Any],
    write_key: str | None,
    endpoint: str,
    received_at: datetime,
    type_: str | None = None,
    defaults: BatchDefaults | None = None,
    email_identifies: bool = False,
    client: str | None = None,
) -> Outcome:
    """Authenticate, validate and keep `items`, in one transaction: the valid ones as one
    batch per source (`profiles.services.events.batch_store`).

    Answers 401 when no item can be authenticated (a missing, unknown or disabled key),
    200 otherwise, listing refused items by index. A single call (`type_` given) that is
    refused answers 400. After the commit, the batch ids go to the `ingest.process_events`
    task, which writes the messages to the event log; a `(source, messageId)` the log
    already holds is dropped there, and counted as a duplicate."""
    item_keys = [i.get("writeKey") if isinstance(i, dict) else None for i in items]
    item_keys = [k if isinstance(k, str) and k else None for k in item_keys]
    sources = sources_by_key([write_key, *item_keys])
    default_source = sources.get(write_key or "")

    by_source: dict[int, list[EventIn]] = defaultdict(list)
    refused: list[Refusal] = []
    for index, (item, key) in enumerate(zip(items, item_keys, strict=True)):
        source = sources.get(key) if key else default_source
        if source is None:
            reason = "No write key was given." if not (key or write_key) else "Unknown or disabled write key."
            refused.append(Refusal(Rejection(index, "unauthorized", reason), None, item))
            continue
        try:
            event = normalize(
                item, source_id=source.id, received_at=received_at, type_=type_, defaults=defaults,
                email_identifies=email_identifies,
            )  # fmt: skip
        except MessageError as exc:
            refused.append(Refusal(Rejection(index, exc.code, exc.message), source, item))
            continue
        by_source[source.id].append(event)

    if not items and default_source is None:
        reason = "No write key was given." if not write_key else "Unknown or disabled write key."
        refused.append(Refusal(Rejection(None, "unauthorized", reason), None, {}))
    if not by_source and refused and all(r.rejection.code == "unauthorized" for r in refused):
        rejection = refused[0].rejection
        refusal_record(source=None, endpoint=endpoint, received_at=received_at, code=rejection.code,
                       reason=rejection.message, payload=items, client=client)  # fmt: skip
        return Outcome(401, {"code": rejection.code, "message": rejection.message})

    batches: list[int] = []
    with transaction.atomic():
        counts: dict[int, list[int]] = defaultdict(lambda: [0, 0, 0])
        for source_id, events in by_source.items():
            batches.append(batch_store(events=events))
            counts[source_id][0] += len(events)
        for refusal in refused:
            if refusal.source is not None:
                counts[refusal.source.id][2] += 1
        refusals_record(refused, endpoint=endpoint, received_at=received_at, client=client)
        counters_add({(source_id, received_at): (a, d, r) for source_id, (a, d, r) in counts.items()})
        if batches:
            transaction.on_commit(lambda: enqueue_pipeline(batches))

    accepted = sum(len(events) for events in by_source.values())
    rejections = [r.rejection for r in refused]
    if type_ is not None and rejections and len(items) == 1:
        return Outcome(400, {"code": rejections[0].code, "message": rejections[0].message}, 0, batches, rejections)
    body: dict[str, Any] = {"success": True}
    if rejections:
        body["rejected"] = [{"index": r.index, "code": r.code, "message": r.message} for r in rejections]
    return Outcome(200, body, accepted, batches, rejections)


def batch_retry(*, batch_id: int, source_id: int, actor: Any, reason: str) -> bool:
    """Send a parked batch back to the pipeline (audited); returns whether it was parked."""
    with transaction.atomic():
        if not batch_unpark(batch_id=batch_id, source_id=source_id, actor=actor, reason=reason):
            return False
        transaction.on_commit(lambda: enqueue_pipeline([batch_id]))
    return True


# --- Pixel and tracked links -----------------------------------------------------------------


def pixel_ingest(
    *, method: str, params: Mapping[str, list[str]], received_at: datetime, ip: str | None, user_agent: str | None
) -> Outcome:
    """Record a pixel call (`?data=<base64 JSON>` or dotted query parameters). The caller
    answers with the GIF whatever happens; problems land in the debugger."""
    endpoint = f"pixel/{method}"[:40]
    try:
        message = _pixel_message(params)
    except BodyError as exc:
        key = _first(params, "writeKey")
        source = sources_by_key([key]).get(key or "")
        refusal_record(source=source, endpoint=endpoint, received_at=received_at, code=exc.code, reason=exc.message,
                       payload=dict(params), client=ip)  # fmt: skip
        return Outcome(400, {"code": exc.code, "message": exc.message})
    context = message.get("context")
    if isinstance(context, dict):
        context.setdefault("ip", ip)
        context.setdefault("userAgent", user_agent)
    elif context is None:
        message["context"] = {"ip": ip, "userAgent": user_agent}
    key = message.pop("writeKey", None)
    if method not in MESSAGE_TYPES:
        message["type"] = method
    return messages_ingest(
        items=[message],
        write_key=key if isinstance(key, str) else None,
        endpoint=endpoint,
        received_at=received_at,
        type_=method if method in MESSAGE_TYPES else None,
        client=ip,
    )


def _pixel_message(params: Mapping[str, list[str]]) -> dict[str, Any]:
    data = _first(params, "data")
    message: dict[str, Any] = {}
    if data is not None:
        try:
            # Standard or URL-safe alphabet, padded or not; a `+` left unencoded in the query
            # string arrives as a space.
            text = data.strip().replace(" ", "+").replace("-", "+").replace("_", "/").rstrip("=")
            decoded = base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
        except ValueError:  # binascii.Error is one
            raise BodyError("invalid_data", "`data` is not base64.") from None
        message = parse_json(decoded)
        key = _first(params, "writeKey")
        if key:
            message.setdefault("writeKey", key)
        return message
    for key, values in params.items():
        if not values:
            continue
        node = message
        *parents, leaf = key.split(".")
        for part in parents:
            child = node.get(part)
            if not isinstance(child, dict):
                child = node[part] = {}
            node = child
        node[leaf] = values[-1]
    return message


def click_ingest(
    *, params: Mapping[str, list[str]], received_at: datetime, ip: str | None, user_agent: str | None
) -> tuple[str | None, Outcome]:
    """Record a tracked-link click and return where to redirect.

    The target is returned only if the link's signature is valid or its host is one of
    the source's allowed domains; otherwise it is None and the refusal is recorded."""
    pairs = [(k, v) for k, values in params.items() for v in values]
    key = _first(params, "writeKey")
    url = _first(params, "url") or ""
    source = sources_by_key([key]).get(key or "")
    if source is None:
        refusal_record(source=None, endpoint="click", received_at=received_at, code="unauthorized",
                       reason="Unknown or disabled write key.", payload=pairs, client=ip)  # fmt: skip
        return None, Outcome(400, {"code": "unauthorized", "message": "This link's source is unknown or disabled."})
    signed = links.link_signature_valid(pairs, source.signing_secret, _first(params, links.SIGNATURE_PARAM) or "")
    if not links.redirect_target_safe(url) or not (signed or links.domain_allowed(url, source.redirect_domains)):
        reason = "The link's target is not signed by its source nor on an allowed domain."
        refusal_record(source=source, endpoint="click", received_at=received_at, code="unsafe_redirect",
                       reason=reason, payload=pairs, client=ip)  # fmt: skip
        return None, Outcome(400, {"code": "unsafe_redirect", "message": reason})

    user_id, anonymous_id = _first(params, "ajs_uid"), _first(params, "ajs_aid")
    context = {"ip": ip, "userAgent": user_agent}
    prefixed = {k: values[-1] for k, values in params.items() if values}
    items: list[dict[str, Any]] = []
    if user_id:
        traits = {k[10:]: v for k, v in prefixed.items() if k.startswith("ajs_trait_") and k[10:]}
        items.append({"type": "identify", "userId": user_id, "anonymousId": anonymous_id, "traits": traits,
                      "context": context})  # fmt: skip
    properties = {k[9:]: v for k, v in prefixed.items() if k.startswith("ajs_prop_") and k[9:]}
    properties["link_url"] = url
    items.append({
        "type": "track", "event": _first(params, "ajs_event") or "Email Link Clicked",
        "userId": user_id, "anonymousId": anonymous_id, "properties": properties, "context": context,
    })  # fmt: skip
    outcome = messages_ingest(items=items, write_key=key, endpoint="click", received_at=received_at, client=ip)
    return url, outcome


def _first(params: Mapping[str, list[str]], key: str) -> str | None:
    values = params.get(key)
    return values[-1] if values else None


def body_too_large_record(
    *,
    endpoint: str,
    write_key: str | None,
    source_id: int | None,
    received_at: datetime,
    reason: str,
    size: str,
    client: str | None = None,
) -> None:
    """Keep a request refused for its size in the debugger (within the refusal caps), counted
    as rejected for the source its URL (`source_id`) or write key names, if any. Nothing of
    the body is kept: it was never read."""
    if source_id is not None:
        source = Source.objects.filter(pk=source_id, enabled=True).first()
    else:
        source = sources_by_key([write_key]).get(write_key or "")
    refusal_record(source=source, endpoint=endpoint, received_at=received_at, code="payload_too_large", reason=reason,
                   payload=f"(not kept: {size} bytes)", client=client)  # fmt: skip


def tracked_link(
    *,
    source: Source,
    url: str,
    base_url: str,
    user_id: str | None = None,
    anonymous_id: str | None = None,
    event: str | None = None,
    properties: Mapping[str, str] | None = None,
    traits: Mapping[str, str] | None = None,
) -> str:
    """A signed tracked link for an email template: clicking it records a track (and an
    identify when `user_id` is given) and redirects to `url`."""
    pairs = links.tracked_link_params(
        write_key=source.write_key, secret=source.signing_secret, url=url, user_id=user_id,
        anonymous_id=anonymous_id, event=event, properties=properties, traits=traits,
    )  # fmt: skip
    return links.tracked_link_url(base_url, pairs)
