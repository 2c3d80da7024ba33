"""The event log as the vocabulary reads it, shared by computed traits and audiences: which
events a name selects, and how a moment is compared with an event's timestamp. Pure."""

from __future__ import annotations

from collections.abc import Sequence
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


def events_of(d: Dialect, table: str, profile_ids: Sequence[int]) -> str | None:
    """PostgreSQL: the events of a few profiles as a row source (`FROM <this> e`), fenced so
    that the planner reads them by the profile index alone. Unfenced, it joins that index's
    bitmap with the event-name index's, which for a common event is a million entries (300
    ms for 500 profiles instead of 3). The ids are integers, written into the text. None on
    SQLite, where a plain condition on the profile is planned well."""
    if d.name != "postgresql":
        return None
    ids = ",".join(str(int(i)) for i in profile_ids)
    return f"(SELECT * FROM {table} WHERE profile_id = ANY(ARRAY[{ids}]::bigint[]) OFFSET 0)"  # no braces: `fmt`'s


def event_time(d: Dialect, at: datetime) -> Sql:
    """A timestamp parameter compared with the event log's `timestamp` column."""
    if d.name == "postgresql":
        return d.instant(at)
    return value(str(at.astimezone(UTC).replace(tzinfo=None)))  # SQLite keeps naive UTC text, as Django writes it
