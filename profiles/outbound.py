"""What profiles hand to destinations (floor 1): who a person is in a Segment message (userId,
anonymousId, each email, their traits, their stored consent), the identify of a computed
trait's change, and the raw events of resolution for webhooks that take a source's stream.
Everything here runs in the caller's transaction, so each delivery is written with the
change that causes it."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.conf import settings

from destinations.outbox import Outgoing, Route, deliveries_enqueue, event_stream_sources, routes, subscribed
from profiles.models import Event, Identity, Profile

CONSENT_EVENT = "Segment Consent Preference Updated"
CONSENT_TRAIT = "segment_consent_preference"
_NAMESPACE = uuid.UUID("6f1c8e4e-3b0a-4f43-9d0e-2c2f8d1f0a15")  # message ids: uuid5 of what caused them


def message_id(*parts: Any) -> str:
    """A stable messageId for a delivery caused by `parts` (the same cause, the same id)."""
    return str(uuid.uuid5(_NAMESPACE, "/".join(str(p) for p in parts)))


@dataclass(frozen=True, slots=True)
class Recipient:
    profile_id: int
    key: str  # use_…: orders a person's deliveries
    user_id: str | None
    anonymous_id: str | None
    emails: tuple[str, ...]
    traits: dict[str, Any]
    consent: dict[str, bool] | None  # categoryPreferences, when the person stored any

    def context(self, email: str | None, personas: Mapping[str, Any]) -> dict[str, Any]:
        traits = {**self.traits, **({"email": email} if email else {})}
        out: dict[str, Any] = {"personas": dict(personas), "traits": traits}
        if self.consent is not None:
            out["consent"] = {"categoryPreferences": dict(self.consent)}
        return out


def _stored_consent(traits: Mapping[str, Any]) -> dict[str, bool] | None:
    """`segment_consent_preference.categories.<cat>` traits, nested or dotted."""
    nested = traits.get(CONSENT_TRAIT)
    if isinstance(nested, Mapping) and isinstance(nested.get("categories"), Mapping):
        return {str(k): v is True for k, v in nested["categories"].items()}
    prefix = f"{CONSENT_TRAIT}.categories."
    dotted = {k[len(prefix) :]: v is True for k, v in traits.items() if k.startswith(prefix)}
    return dotted or None


def recipients(profile_ids: Iterable[int]) -> dict[int, Recipient]:
    """Each live profile of `profile_ids` as a recipient (three queries, any number of ids).
    Consent is the person's stored preference: their traits, else their latest
    `Segment Consent Preference Updated` event (missing categories count as false)."""
    ids = sorted(set(profile_ids))
    out: dict[int, Recipient] = {}
    for start in range(0, len(ids), 2000):
        chunk = ids[start : start + 2000]
        live = Profile.objects.filter(pk__in=chunk, merged_into__isnull=True)
        profiles = {pid: (key, traits or {}) for pid, key, traits in live.values_list("pk", "key", "traits")}
        found: dict[int, dict[str, list[tuple[datetime, str]]]] = {}
        identities = Identity.objects.filter(
            profile_id__in=list(profiles), kind__in=("user_id", "anonymous_id", "email")
        )
        for pid, kind, value, seen in identities.values_list("profile_id", "kind", "value", "last_seen_at"):
            found.setdefault(pid, {}).setdefault(kind, []).append((seen, value))
        consent: dict[int, dict[str, bool]] = {}
        events = Event.objects.filter(profile_id__in=list(profiles), event=CONSENT_EVENT, type="track")
        for pid, context in events.order_by("timestamp", "id").values_list("profile_id", "context"):
            prefs = ((context or {}).get("consent") or {}).get("categoryPreferences")
            if isinstance(prefs, Mapping):
                consent[pid] = {str(k): v is True for k, v in prefs.items()}
        for pid, (key, traits) in profiles.items():
            kinds = found.get(pid, {})

            def latest(kind: str, kinds: dict[str, list[tuple[datetime, str]]] = kinds) -> str | None:
                values = kinds.get(kind)
                return max(values)[1] if values else None

            out[pid] = Recipient(
                profile_id=pid, key=key, user_id=latest("user_id"), anonymous_id=latest("anonymous_id"),
                emails=tuple(sorted(v for _, v in kinds.get("email", []))),
                traits={k: v for k, v in traits.items() if not k.startswith(CONSENT_TRAIT)},
                consent=_stored_consent(traits) or consent.get(pid),
            )  # fmt: skip
    return out


def personas(computation_class: str, key: str, computation_id: str) -> dict[str, Any]:
    space = settings.CDP_SPACE_ID
    return {"computation_class": computation_class, "computation_key": key, "computation_id": computation_id,
            "space_id": space, "namespace": f"spa_{space}"}  # fmt: skip


def identify_of(r: Recipient, traits: Mapping[str, Any], email: str | None, *, context: Mapping[str, Any],
                at: datetime, mid: str) -> dict[str, Any]:  # fmt: skip
    message: dict[str, Any] = {"type": "identify", "messageId": mid, "traits": {**traits, **({"email": email} if email
                               else {})}, "context": dict(context), "timestamp": at.isoformat()}  # fmt: skip
    for field, value in (("userId", r.user_id), ("anonymousId", r.anonymous_id)):
        if value:
            message[field] = value
    return message


# --- Computed traits -----------------------------------------------------------------------


def trait_deliveries(
    *, trait_id: int, key: str, rows: Sequence[tuple[int, Any, Any]], at: datetime, found: Sequence[Route] | None = None
) -> int:
    """An identify `{key: value}` with `context.personas.computation_class = "trait"` for each
    changed value (one per email), owed to the destinations that take the trait (of `found`,
    when the caller has read them). Returns how many deliveries."""
    found = routes() if found is None else found
    if not rows or not subscribed("trait", [key], found=found):
        return 0
    people = recipients(pid for pid, _, _ in rows)
    ctx = personas("trait", key, f"trt_{trait_id}")
    messages = []
    for pid, _, new in rows:
        r = people.get(pid)
        if r is None:
            continue
        for email in r.emails or (None,):
            mid = message_id("trait", trait_id, pid, at.isoformat(), email)
            messages.append(Outgoing(kind="trait", subject=key, person=r.key, message=identify_of(
                r, {key: new}, email, context=r.context(email, ctx), at=at, mid=mid)))  # fmt: skip
    done = deliveries_enqueue(messages=messages, found=found)
    return done.pending + done.filtered


# --- Raw events (webhooks with an event stream) -----------------------------------------------


def event_deliveries(*, rows: Sequence[tuple[Any, ...]], assignments: Mapping[int, int]) -> int:
    """Resolved events of the sources some webhook takes, as Segment sends them. `rows` are
    the event log's rows (`LOG_COLUMNS` without the profile). Returns how many deliveries."""
    found = routes()
    sources = event_stream_sources(found=found)
    if not sources:
        return 0
    owners = {assignments[r[0]] for r in rows if r[1] in sources and r[0] in assignments}
    keys = dict(Profile.objects.filter(pk__in=owners).values_list("pk", "key"))
    messages = []
    for r in rows:
        if r[1] not in sources:
            continue
        (event_id, source_id, mid, type_, event, name, user_id, anonymous_id, group_id, previous_id, timestamp,
         original, sent_at, received_at, properties, traits, context, integrations, extra) = r[:19]  # fmt: skip
        message: dict[str, Any] = {**(extra or {}), "type": type_, "messageId": mid, "timestamp": timestamp.isoformat(),
                                   "receivedAt": received_at.isoformat(), "context": context or {},
                                   "integrations": integrations or {}}  # fmt: skip
        for field, value in (("userId", user_id), ("anonymousId", anonymous_id), ("event", event), ("name", name),
                             ("groupId", group_id), ("previousId", previous_id), ("properties", properties),
                             ("traits", traits)):  # fmt: skip
            if value not in (None, {}):
                message[field] = value
        if original:
            message["originalTimestamp"] = original.isoformat()
        if sent_at:
            message["sentAt"] = sent_at.isoformat()
        person = keys.get(assignments.get(event_id, 0), "") or f"anonymous:{anonymous_id or user_id or mid}"
        messages.append(Outgoing(kind="event", subject=str(source_id), person=person, message=message,
                                 source_id=source_id, event=event or name))  # fmt: skip
    done = deliveries_enqueue(messages=messages, found=found)
    return done.pending + done.filtered
