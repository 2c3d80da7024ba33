"""The database connection as the hot paths use it, for reads and writes alike."""

from __future__ import annotations

import select
from typing import Any

import orjson
import psycopg
from django.db import InterfaceError, OperationalError, connection
from psycopg.pq import Format
from psycopg.types.json import set_json_loads


def pg_cursor(*, parse_json: bool = False, binary: bool = False) -> Any:
    """A cursor on Django's connection (so in its transaction) with server-side binding,
    wrapped like Django's own: errors become Django's, and tests count its queries. With
    `parse_json`, json/jsonb columns arrive parsed (by orjson) rather than as text. With
    `binary`, results come in PostgreSQL's binary format: a timestamp is then read by
    psycopg's C loader, not parsed from text by the Python one Django installs (measured:
    9% of resolution's Python time); use it with `parse_json`, as Django's JSON fields
    expect text."""
    _check_health()
    connection.ensure_connection()
    raw = connection.connection
    assert raw is not None
    cursor = psycopg.Cursor(raw)
    if parse_json:
        set_json_loads(orjson.loads, cursor)
    if binary:
        cursor.format = Format.BINARY
    return connection._prepare_cursor(cursor)  # type: ignore[attr-defined]


def _check_health() -> None:
    """Django's health check of a kept connection, done on its first use in a request, without
    its `SELECT 1` round trip (a twentieth of a Profile API lookup's CPU, the database's share
    included): an idle connection has nothing to read, so a socket that is readable, or
    closed, is one the server dropped (a restart, `pg_terminate_backend`, an idle timeout
    sends its goodbye and closes). Such a connection is closed; the query then opens another."""
    wrapper: Any = connection  # django-stubs do not know the health-check attributes
    raw = wrapper.connection
    if raw is None or not wrapper.health_check_enabled or wrapper.health_check_done:
        return
    if _dropped(raw):
        wrapper.close()
    wrapper.health_check_done = True


def _dropped(raw: Any) -> bool:
    if raw.closed or raw.broken:
        return True
    try:
        readable, _, _ = select.select([raw.fileno()], [], [], 0)
    except (OSError, ValueError):
        return True
    return bool(readable)


# The database is away, or did not answer in time: a connection refused or lost, a
# statement or lock timeout (all OperationalError), a connection already closed
# (InterfaceError). Every API answers these 503 with Retry-After: nothing was stored, and
# the same request can be sent again.
DATABASE_UNAVAILABLE: tuple[type[Exception], ...] = (OperationalError, InterfaceError)
# What the 503 asks a client to wait: PostgreSQL restarts in a few seconds, and an SDK that
# honours it neither hammers a recovering server nor waits long after it is back.
RETRY_AFTER_SECONDS = 5
