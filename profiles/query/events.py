"""The event log as the vocabulary reads it, shared by computed traits and audiences: which
events a name selects, and how a moment is compared with an event's timestamp. Pure."""

from __future__ import annotations

from datetime import UTC, datetime

from profiles.query.dialects import Dialect
from profiles.query.sql import Sql, fmt, value

EVENTS = "profiles_event"
# Segment's names for page and screen calls; any other name is a track event's.
CALL_NAMES = {"Page Viewed": "page", "Screen Viewed": "screen"}


def event_match(name: str, *, alias: str = "e") -> Sql:
    """The events a name selects: a track event by its name; `Page Viewed` and `Screen
    Viewed` are page and screen calls (and tracks so named)."""
    call = CALL_NAMES.get(name)
    track = fmt(f"({alias}.type = 'track' AND {alias}.event = {{n}})", n=value(name))
    return fmt(f"({alias}.type = '{call}' OR {{t}})", t=track) if call else track


def event_time(d: Dialect, at: datetime) -> Sql:
    """A timestamp parameter compared with the event log's `timestamp` column."""
    if d.name == "postgresql":
        return d.instant(at)
    return value(str(at.astimezone(UTC).replace(tzinfo=None)))  # SQLite keeps naive UTC text, as Django writes it
