"""Mailchimp audience (Marketing) webhooks to Segment messages. Pure.

One form-encoded event per POST: `type`, `fired_at` (`YYYY-MM-DD HH:MM:SS`, no zone:
taken as UTC) and PHP-bracketed `data[...]` keys. Each person event becomes an `identify`
(traits from the merge fields, the list status) and a `track`; `upemail` puts the old and
the new address in one message, so identity resolution joins the new one to the person."""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from ingest.providers import common as c

_BRACKETS = re.compile(r"\[([^\]]*)\]")
# Merge tags with a Segment trait of their own; the rest keep their tag, lowercased.
_TRAITS = {"FNAME": "firstName", "LNAME": "lastName", "PHONE": "phone", "BIRTHDAY": "birthday",
           "ADDRESS": "address"}  # fmt: skip
_EVENTS = {
    "subscribe": c.SUBSCRIBED, "unsubscribe": c.UNSUBSCRIBED, "profile": "Email Profile Updated",
    "upemail": "Email Address Changed", "cleaned": "Email Cleaned",
}  # fmt: skip
_STATUS = {"subscribe": "subscribed", "unsubscribe": "unsubscribed", "cleaned": "cleaned"}


def unflatten(pairs: Mapping[str, str]) -> dict[str, Any]:
    """`{"data[merges][FNAME]": "Alice"}` to `{"data": {"merges": {"FNAME": "Alice"}}}`."""
    out: dict[str, Any] = {}
    for key, value in pairs.items():
        head = key.split("[", 1)[0]
        parts = [head, *_BRACKETS.findall(key[len(head) :])]
        node = out
        for part in parts[:-1]:
            child = node.get(part)
            if not isinstance(child, dict):
                child = node[part] = {}
            node = child
        node[parts[-1]] = value
    return out


def _fired_at(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.strptime(value.strip(), "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)
    except ValueError:
        raise c.PayloadError(f"`fired_at` is not YYYY-MM-DD HH:MM:SS: {value[:40]!r}.") from None


def messages_from_mailchimp(form: Mapping[str, str]) -> tuple[list[dict[str, Any]], str | None]:
    """The messages of one webhook POST, and, for events that name no person (`campaign`),
    why nothing was made (the caller records it). Raises `PayloadError` on a bad body."""
    body = unflatten(form)
    kind = body.get("type")
    data = body.get("data")
    if not isinstance(kind, str) or not kind:
        raise c.PayloadError("A Mailchimp webhook needs a `type`.")
    if not isinstance(data, dict):
        raise c.PayloadError("A Mailchimp webhook needs `data[...]` fields.")
    at = _fired_at(body.get("fired_at"))
    if kind == "campaign":
        return [], "A campaign-status event names no person; it is recorded, not stored as an event."
    if kind not in _EVENTS:
        raise c.PayloadError(f"Unknown Mailchimp webhook type {kind[:40]!r}.")

    email = c.first_text(data.get("new_email") if kind == "upemail" else data.get("email"))
    if not email:
        raise c.PayloadError(f"A Mailchimp {kind} event needs an email.")
    list_id = c.first_text(data.get("list_id"))
    key = (kind, list_id, (email or "").lower(), body.get("fired_at"))
    properties: dict[str, Any] = {
        "list_id": list_id,
        "campaign_id": c.first_text(data.get("campaign_id")),
        "reason": c.first_text(data.get("reason")),
        "action": c.first_text(data.get("action")),
        "mailchimp_id": c.first_text(data.get("id"), data.get("new_id")),
    }
    if kind == "upemail":
        properties["old_email"] = c.first_text(data.get("old_email"))
        properties["new_email"] = email
    track = c.email_message(
        message_id=c.stable_message_id("mailchimp", *key),
        event=_EVENTS[kind],
        email=email,
        user_id=None,
        timestamp=at,
        provider="mailchimp",
        provider_event=kind,
        properties=properties,
        raw=body,
        ip=c.first_text(data.get("ip_opt")) if kind in ("subscribe", "profile") else None,
    )
    traits = _traits(data, email)
    if kind in _STATUS:
        traits["mailchimp_status"] = _STATUS[kind]
    identify: dict[str, Any] = {
        "type": "identify",
        "messageId": c.stable_message_id("mailchimp", "identify", *key),
        "traits": traits,
        "context": {"traits": {"email": c.first_text(data.get("old_email")) or email}},
        "timestamp": c.iso(at),
    }
    return [identify, track], None


def _traits(data: Mapping[str, Any], email: str) -> dict[str, Any]:
    traits: dict[str, Any] = {"email": email}
    merges = data.get("merges")
    if isinstance(merges, dict):
        for tag, value in merges.items():
            if tag == "EMAIL" or value in ("", None):
                continue
            traits[_TRAITS.get(tag, f"mailchimp_{tag.lower()}")] = value
    return traits
