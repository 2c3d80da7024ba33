"""The ingest debugger's hourly counters per source: accepted, duplicates, rejected."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from django.db import connection

from ingest.models import IngestCounter, IngestNotice

_TABLE = IngestCounter._meta.db_table
_UPSERT = (
    f"INSERT INTO {_TABLE} (source_id, hour, accepted, duplicates, rejected) VALUES (%s, %s, %s, %s, %s) "
    f"ON CONFLICT (source_id, hour) DO UPDATE SET accepted = {_TABLE}.accepted + excluded.accepted, "
    f"duplicates = {_TABLE}.duplicates + excluded.duplicates, rejected = {_TABLE}.rejected + excluded.rejected"
)


def counters_add(deltas: Mapping[tuple[int, datetime], tuple[int, int, int]]) -> None:
    """Add `(accepted, duplicates, rejected)` to each `(source id, time)`'s hour, one upsert
    each, in a fixed order. Called last in a transaction, so each row lock is held only
    until the commit. The edge counts every valid message as accepted; the pipeline moves
    the ones the log already held to duplicates."""
    per_row: dict[tuple[int, datetime], list[int]] = {}
    for (source_id, at), values in deltas.items():
        row = per_row.setdefault((source_id, at.replace(minute=0, second=0, microsecond=0)), [0, 0, 0])
        for i, value in enumerate(values):
            row[i] += value
    with connection.cursor() as cursor:
        for (source_id, hour), (accepted, duplicates, rejected) in sorted(per_row.items()):
            if accepted or duplicates or rejected:
                cursor.execute(
                    _UPSERT,
                    [source_id, connection.ops.adapt_datetimefield_value(hour), accepted, duplicates, rejected],
                )


_NOTICES = IngestNotice._meta.db_table
_NOTICE_UPSERT = (
    f"INSERT INTO {_NOTICES} (source_id, hour, code, count) VALUES (%s, %s, %s, %s) "
    f"ON CONFLICT (source_id, hour, code) DO UPDATE SET count = {_NOTICES}.count + excluded.count"
)


def notices_add(deltas: Mapping[tuple[int, datetime, str], int]) -> None:
    """Add to each `(source id, time, code)`'s hourly notice count, in a fixed order."""
    per_row: dict[tuple[int, datetime, str], int] = {}
    for (source_id, at, code), n in deltas.items():
        key = (source_id, at.replace(minute=0, second=0, microsecond=0), code)
        per_row[key] = per_row.get(key, 0) + n
    with connection.cursor() as cursor:
        for (source_id, hour, code), n in sorted(per_row.items()):
            if n:
                cursor.execute(_NOTICE_UPSERT, [source_id, connection.ops.adapt_datetimefield_value(hour), code, n])
