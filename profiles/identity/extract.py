"""Which identifiers a message carries (segment-spec section 4, "Default identifiers")."""

from __future__ import annotations

from typing import Any

from profiles.identity.planner import Message
from profiles.identity.rules import IdentityRules, IdKey

# The columns of a stored event that `event_message` reads, in its argument order.
EVENT_COLUMNS = (
    "id", "timestamp", "source_id", "message_id", "type", "user_id", "anonymous_id", "previous_id", "traits",
    "context", "properties", "integrations",
)  # fmt: skip

_DEVICE_TYPES = ("android", "ios")
# Longer values are not identifiers: no real id is this long, and a unique index on
# (kind, value) must stay well inside PostgreSQL's index-row limit.
MAX_IDENTIFIER_CHARS = 500


def _text(value: Any) -> str | None:
    if isinstance(value, str):
        value = value.strip()
        return value or None
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return None


def normalize_identifier(kind: str, raw: str) -> str | None:
    """A looked-up value as resolution stores it: trimmed, and lowercased for emails."""
    value = _text(raw)
    if value is None:
        return None
    return value.lower() if kind.lower() == "email" else value


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _camel(key: str) -> str:
    head, *rest = key.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def extract_identifiers(
    *,
    user_id: str | None,
    anonymous_id: str | None,
    traits: Any,
    context: Any,
    properties: Any,
    integrations: Any,
    rules: IdentityRules,
) -> list[IdKey]:
    """The message's identifiers, normalised, without blocked values or repeats, most
    trusted first. A blocked value is simply not an identifier; the message still resolves
    by the others."""
    traits, context, properties = _dict(traits), _dict(context), _dict(properties)
    context_traits = _dict(context.get("traits"))
    found: list[IdKey] = []

    def add(kind: str, raw: Any, lower: bool = False) -> None:
        value = _text(raw)
        if value is not None:
            found.append((kind, value.lower() if lower else value))

    add("user_id", user_id)
    add("anonymous_id", anonymous_id)
    for holder in (traits, context_traits, properties):
        add("email", holder.get("email"), lower=True)

    for external in context.get("externalIds") or ():
        if not isinstance(external, dict) or external.get("collection", "users") != "users":
            continue
        kind = _text(external.get("type"))
        if kind:
            add(kind.lower(), external.get("id"), lower=kind.lower() == "email")

    device = _dict(context.get("device"))
    device_type = _text(device.get("type"))
    if device_type and device_type.lower() in _DEVICE_TYPES:
        prefix = device_type.lower()
        add(f"{prefix}.id", device.get("id"))
        if device.get("adTrackingEnabled") is True:
            add(f"{prefix}.idfa", device.get("advertisingId"))
        add(f"{prefix}.push_token", device.get("token"))

    for holder in (_dict(integrations), _dict(context.get("integrations"))):
        add("ga_client_id", _dict(holder.get("Google Analytics")).get("clientId"))

    for custom in rules.custom:
        holders = {
            "traits": (traits, context_traits),
            "properties": (properties,),
            "context": (context,),
        }.get(custom.location, ())
        for holder in holders:
            for key in dict.fromkeys((custom.key, _camel(custom.key))):
                add(custom.kind, holder.get(key))

    unique = [
        key
        for key in dict.fromkeys(found)
        if len(key[1]) <= MAX_IDENTIFIER_CHARS and len(key[0]) <= 64 and not rules.rule(key[0]).blocks(key[1])
    ]
    return sorted(unique, key=rules.rank_key)


def event_message(row: tuple[Any, ...], rules: IdentityRules) -> Message:
    """The planner's view of a stored event, from its `EVENT_COLUMNS`. A group call's
    `traits` describe the group, so only identify traits count; only alias has a previousId."""
    event_id, timestamp, source_id, message_id, type_, user_id, anonymous_id, previous_id, traits = row[:9]
    context, properties, integrations = row[9:12]
    identifiers = extract_identifiers(
        user_id=user_id, anonymous_id=anonymous_id, traits=traits if type_ == "identify" else None,
        context=context, properties=properties, integrations=integrations, rules=rules,
    )  # fmt: skip
    return Message(event_id, timestamp, source_id, message_id, tuple(identifiers),
                   previous_id if type_ == "alias" else None)  # fmt: skip
