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


def _camel(key: str) -> str:
    head, *rest = key.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


_NONE: dict[str, Any] = {}


def _mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else _NONE


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
    by the others. (Written for speed: it runs for every event, and was a quarter of
    resolution's Python time as small helper calls.)"""
    traits, context, properties = _mapping(traits), _mapping(context), _mapping(properties)
    context_traits = _mapping(context.get("traits"))
    found: list[IdKey] = []
    for kind, raw in (("user_id", user_id), ("anonymous_id", anonymous_id)):
        if raw is not None and (value := _text(raw)):
            found.append((kind, value))
    for holder in (traits, context_traits, properties):
        if (raw := holder.get("email")) is not None and (value := _text(raw)):
            found.append(("email", value.lower()))

    for external in context.get("externalIds") or ():
        if not isinstance(external, dict) or external.get("collection", "users") != "users":
            continue
        external_type = _text(external.get("type"))
        if external_type and (value := _text(external.get("id"))):
            external_kind = external_type.lower()
            found.append((external_kind, value.lower() if external_kind == "email" else value))

    device = context.get("device")
    if isinstance(device, dict) and device:
        device_type = _text(device.get("type"))
        if device_type and device_type.lower() in _DEVICE_TYPES:
            prefix = device_type.lower()
            for kind, raw in (
                (f"{prefix}.id", device.get("id")),
                (f"{prefix}.idfa", device.get("advertisingId") if device.get("adTrackingEnabled") is True else None),
                (f"{prefix}.push_token", device.get("token")),
            ):
                if raw is not None and (value := _text(raw)):
                    found.append((kind, value))

    for holder in (integrations, context.get("integrations")):
        ga = holder.get("Google Analytics") if isinstance(holder, dict) else None
        if isinstance(ga, dict) and (value := _text(ga.get("clientId"))) is not None:
            found.append(("ga_client_id", value))

    for custom in rules.custom:
        holders = {
            "traits": (traits, context_traits),
            "properties": (properties,),
            "context": (context,),
        }.get(custom.location, ())
        for holder in holders:
            for name in dict.fromkeys((custom.key, _camel(custom.key))):
                if (value := _text(holder.get(name))) is not None:
                    found.append((custom.kind, value))

    unique: list[IdKey] = []
    for candidate in found:
        kind, value = candidate
        if candidate in unique or len(value) > MAX_IDENTIFIER_CHARS or len(kind) > 64 or rules.rule(kind).blocks(value):
            continue
        unique.append(candidate)
    if len(unique) > 1:
        unique.sort(key=rules.rank_key)
    return unique


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
