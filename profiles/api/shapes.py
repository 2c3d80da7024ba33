"""Rows to JSON-ready dicts, pure: the bodies of the Profile API and the REST API."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from profiles.models import Demotion, Event, Identity, IdentityAudit, Merge, Profile
from profiles.selectors import Explanation

_VIEWED = {"page": "Page Viewed", "screen": "Screen Viewed"}


def iso(at: datetime | None) -> str | None:
    return at.astimezone(UTC).isoformat().replace("+00:00", "Z") if at is not None else None


def source(source_id: Any) -> str | None:
    # Segment's source ids are strings; ours are the ingest Source's integer id.
    return str(source_id) if source_id is not None else None


def external_id(identity: Identity) -> dict[str, Any]:
    return {
        "id": identity.value,
        "type": identity.kind,
        "source_id": source(identity.source_id),
        "collection": "users",
        "created_at": iso(identity.first_seen_at),
        "encoding": "none",
        "first_message_id": identity.first_message_id or None,
    }


def segment_event(event: Event, profile_key: str) -> dict[str, Any]:
    """An event as the Profile API's /events shows it. Page and screen calls read
    `Page Viewed` / `Screen Viewed`, as in Segment."""
    ids = [
        {"id": value, "type": kind, "source_id": source(event.source_id), "collection": "users", "encoding": "none"}
        for kind, value in (("user_id", event.user_id), ("anonymous_id", event.anonymous_id))
        if value
    ]
    return {
        "external_ids": ids,
        "context": event.context,
        "type": event.type,
        "message_id": event.message_id,
        "source_id": source(event.source_id),
        "timestamp": iso(event.timestamp),
        "properties": event.properties,
        "traits": event.traits,
        "event": event.event if event.type == "track" else _VIEWED.get(event.type),
        "name": event.name,
        "related": {"users": profile_key},
    }


def rest_event(event: Event) -> dict[str, Any]:
    return {
        "id": event.id,
        "message_id": event.message_id,
        "type": event.type,
        "event": event.event,
        "name": event.name,
        "timestamp": iso(event.timestamp),
        "received_at": iso(event.received_at),
        "source_id": event.source_id,
        "user_id": event.user_id,
        "anonymous_id": event.anonymous_id,
        "group_id": event.group_id,
        "properties": event.properties,
        "traits": event.traits,
        "context": event.context,
    }


def profile(row: Profile) -> dict[str, Any]:
    return {
        "id": row.key,
        "traits": row.traits,
        "first_seen_at": iso(row.first_seen_at),
        "last_seen_at": iso(row.last_seen_at),
        "created_at": iso(row.created_at),
        "updated_at": iso(row.updated_at),
        "merge_count": row.merge_count,
    }


def identity(row: Identity) -> dict[str, Any]:
    return {
        "type": row.kind,
        "id": row.value,
        "source_id": row.source_id,
        "first_message_id": row.first_message_id or None,
        "first_event_id": row.first_event_id,
        "first_seen_at": iso(row.first_seen_at),
        "last_seen_at": iso(row.last_seen_at),
    }


def _actor(user: Any) -> str | None:
    return user.get_username() if user is not None else None


def merge(row: Merge) -> dict[str, Any]:
    return {
        "winner": row.winner.key,
        "loser": row.loser.key,
        "message_id": row.message_id or None,
        "event_id": row.event_id,
        "identifiers": row.identifiers,
        "manual": row.actor_id is not None,
        "actor": _actor(row.actor),
        "reason": row.reason,
        "created_at": iso(row.created_at),
    }


def demotion(row: Demotion) -> dict[str, Any]:
    return {
        "type": row.kind,
        "id": row.value,
        "rule": row.rule,
        "message_id": row.message_id or None,
        "event_id": row.event_id,
        "created_at": iso(row.created_at),
    }


def audit(row: IdentityAudit) -> dict[str, Any]:
    return {
        "action": row.action,
        "actor": _actor(row.actor),
        "reason": row.reason,
        "details": row.details,
        "created_at": iso(row.created_at),
    }


def explanation(x: Explanation) -> dict[str, Any]:
    """Why the profile holds what it holds: identifiers with provenance, merges, demotions,
    and staff actions (splits, removals, manual merges), oldest first."""
    return {
        "profile": x.profile.key,
        "requested": x.requested.key,
        "identities": [identity(row) for row in x.identities],
        "merges": [merge(row) for row in x.merges],
        "demotions": [demotion(row) for row in x.demotions],
        "audits": [audit(row) for row in x.audits],
    }
