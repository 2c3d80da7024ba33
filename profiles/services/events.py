"""Writes to the event log.

`events_store` is the one way events enter the database. It is idempotent per
`(source_id, message_id)`: a replayed message stores nothing and returns no id.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from django.db import connection

from profiles.db import pg_cursor
from profiles.models import Event


@dataclass(frozen=True, slots=True)
class EventIn:
    """A validated, canonical Segment message, ready to store."""

    source_id: int
    message_id: str
    type: str
    event: str | None
    name: str | None
    user_id: str | None
    anonymous_id: str | None
    group_id: str | None
    previous_id: str | None
    timestamp: datetime
    original_timestamp: datetime | None
    sent_at: datetime | None
    received_at: datetime
    properties: dict[str, Any]
    traits: dict[str, Any]
    context: dict[str, Any]
    integrations: dict[str, Any]
    extra: dict[str, Any] | None


_COLUMNS = (
    "source_id", "message_id", "type", "event", "name", "user_id", "anonymous_id", "group_id",
    "previous_id", "timestamp", "original_timestamp", "sent_at", "received_at",
    "properties", "traits", "context", "integrations", "extra",
)  # fmt: skip
_PG_TYPES = (
    "int4", "text", "text", "text", "text", "text", "text", "text",
    "text", "timestamptz", "timestamptz", "timestamptz", "timestamptz",
    "jsonb", "jsonb", "jsonb", "jsonb", "jsonb",
)  # fmt: skip
_TABLE = Event._meta.db_table
_COLUMN_SQL = ", ".join(f'"{c}"' for c in _COLUMNS)
_CONFLICT_SQL = 'ON CONFLICT ("source_id", "message_id") DO NOTHING RETURNING "id"'
_PG_INSERT = (
    f"INSERT INTO {_TABLE} ({_COLUMN_SQL}) SELECT * FROM unnest("
    + ", ".join(f"%b::{t}[]" for t in _PG_TYPES)
    + f") {_CONFLICT_SQL}"
)
# SQLite allows 32,766 bound variables per statement; 500 rows of 18 columns stay far below.
_SQLITE_CHUNK = 500


def _json(value: Any) -> str | None:
    return None if value is None else orjson.dumps(value).decode()


def events_store(*, events: Sequence[EventIn]) -> list[int]:
    """Insert `events` in one statement per chunk, skipping any `(source_id, message_id)`
    already stored (or repeated within `events`).

    Returns the ids of the rows actually inserted. Runs in the caller's transaction; the
    caller commits and hands the ids to the pipeline.
    """
    if not events:
        return []
    if connection.vendor == "postgresql":
        return _store_postgresql(events)
    return _store_generic(events)


def _store_postgresql(events: Sequence[EventIn]) -> list[int]:
    # One INSERT … SELECT FROM unnest(arrays): a single round trip for the whole batch, with
    # server-side binding, and ON CONFLICT for deduplication (which COPY cannot do). The
    # arrays go in binary (%b): in text format psycopg escapes every quote of every JSON
    # string in Python, measured at 8.4 ms per 100 events against 0.35 ms.
    columns: list[list[Any]] = [[] for _ in _COLUMNS]
    for e in events:
        row = (
            e.source_id, e.message_id, e.type, e.event, e.name, e.user_id, e.anonymous_id,
            e.group_id, e.previous_id, e.timestamp, e.original_timestamp, e.sent_at, e.received_at,
            _json(e.properties), _json(e.traits), _json(e.context), _json(e.integrations),
            _json(e.extra),
        )  # fmt: skip
        for column, value in zip(columns, row, strict=True):
            column.append(value)
    with pg_cursor() as cursor:
        cursor.execute(_PG_INSERT, columns)
        return [row[0] for row in cursor.fetchall()]


def _store_generic(events: Sequence[EventIn]) -> list[int]:
    adapt = connection.ops.adapt_datetimefield_value
    ids: list[int] = []
    placeholders = "(" + ", ".join(["%s"] * len(_COLUMNS)) + ")"
    with connection.cursor() as cursor:
        for start in range(0, len(events), _SQLITE_CHUNK):
            chunk = events[start : start + _SQLITE_CHUNK]
            params: list[Any] = []
            for e in chunk:
                params.extend((
                    e.source_id, e.message_id, e.type, e.event, e.name, e.user_id, e.anonymous_id,
                    e.group_id, e.previous_id, adapt(e.timestamp), adapt(e.original_timestamp),
                    adapt(e.sent_at), adapt(e.received_at), _json(e.properties), _json(e.traits),
                    _json(e.context), _json(e.integrations), _json(e.extra),
                ))  # fmt: skip
            sql = (
                f"INSERT INTO {_TABLE} ({_COLUMN_SQL}) VALUES "
                + ", ".join([placeholders] * len(chunk))
                + f" {_CONFLICT_SQL}"
            )
            cursor.execute(sql, params)
            ids.extend(row[0] for row in cursor.fetchall())
    return ids
