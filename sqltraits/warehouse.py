"""The database SQL traits read: `SQL_TRAITS_DATABASE_URL` (a `postgres://` or `sqlite:///`
URL), by default the CDP's own. Every query runs on a connection of its own that cannot write:

- PostgreSQL: psycopg, a `READ ONLY` transaction (and `default_transaction_read_only`, so no
  later transaction of the session may write either), statement and lock timeouts of
  `SQL_TRAITS_STATEMENT_TIMEOUT` seconds, and a server-side cursor: `DECLARE … CURSOR FOR` takes
  one SELECT, sent in the extended protocol, which refuses several statements; rows are
  fetched in chunks. The transaction is rolled back and the connection closed after.
- SQLite: a `file:…?mode=ro` connection with `PRAGMA query_only`, one statement per
  `execute` (Python's sqlite3 refuses more), and a progress handler that interrupts the query
  past the timeout.

The whole read, fetching included, must end within the timeout. What this connection refuses
is the real guard; `definitions.query_check` only refuses the obvious first.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import dj_database_url
import psycopg
from django.conf import settings
from django.db import connections

# Rows per FETCH from PostgreSQL's cursor: a few hundred kilobytes per round trip.
FETCH_ROWS = 2000
# SQLite calls the progress handler every this many virtual-machine instructions (~1 ms).
SQLITE_PROGRESS_STEPS = 10_000
CONNECT_TIMEOUT_S = 5
_LIBPQ_KEPT = frozenset({"gssencmode", "channel_binding", "target_session_attrs", "passfile", "service"})


class WarehouseError(Exception):
    """The query could not be run or read (refused, failed, timed out, too many rows), or the
    database could not be reached. The message says which, for the run's report."""


@dataclass(slots=True)
class Result:
    columns: tuple[str, ...]
    rows: Iterator[Sequence[Any]]


def _timeout() -> float:
    return float(settings.SQL_TRAITS_STATEMENT_TIMEOUT)


def _target() -> tuple[str, Any]:
    """("postgresql", conninfo or kwargs) or ("sqlite", path)."""
    url = settings.SQL_TRAITS_DATABASE_URL
    if url:
        scheme = url.split(":", 1)[0].lower()
        if scheme in ("postgres", "postgresql"):
            return "postgresql", url
        if scheme == "sqlite":
            return "sqlite", dj_database_url.parse(url)["NAME"]
        raise WarehouseError("SQL_TRAITS_DATABASE_URL must be a postgres:// or sqlite:/// URL.")
    own = connections["default"]
    params = own.settings_dict
    if own.vendor == "sqlite":
        return "sqlite", str(params["NAME"])
    kwargs = {"dbname": params["NAME"], "user": params["USER"], "password": params["PASSWORD"],
              "host": params["HOST"], "port": params["PORT"]}  # fmt: skip
    # The connection's TLS and routing as Django's has them (not its timeouts: ours below).
    kwargs |= {k: v for k, v in (params.get("OPTIONS") or {}).items() if k.startswith("ssl") or k in _LIBPQ_KEPT}
    return "postgresql", {k: str(v) for k, v in kwargs.items() if v}


@contextmanager
def warehouse_rows(*, query: str) -> Iterator[Result]:
    """Run `query` read-only and yield its columns and rows (an iterator: fetched as read).
    At most `SQL_TRAITS_MAX_ROWS` rows. Raises `WarehouseError`; nothing the query tries to
    write is kept."""
    vendor, target = _target()
    deadline = time.monotonic() + _timeout()
    if vendor == "sqlite":
        with _sqlite(target, query, deadline) as result:
            yield result
    else:
        with _postgresql(target, query, deadline) as result:
            yield result


def _limited(rows: Iterator[Sequence[Any]], deadline: float) -> Iterator[Sequence[Any]]:
    limit = int(settings.SQL_TRAITS_MAX_ROWS)
    for count, row in enumerate(rows, 1):
        if count > limit:
            raise WarehouseError(f"The query returned more than {limit:,} rows (SQL_TRAITS_MAX_ROWS).")
        if count % FETCH_ROWS == 0 and time.monotonic() > deadline:
            raise WarehouseError(_timed_out())
        yield row


def _timed_out() -> str:
    return f"The query ran over {_timeout():g} s (SQL_TRAITS_STATEMENT_TIMEOUT) and was stopped."


# --- PostgreSQL -------------------------------------------------------------------------------


@contextmanager
def _postgresql(target: Any, query: str, deadline: float) -> Iterator[Result]:
    ms = max(1, int(_timeout() * 1000))
    options = (f"-c default_transaction_read_only=on -c statement_timeout={ms} -c lock_timeout={ms} "
               f"-c idle_in_transaction_session_timeout={ms * 2}")  # fmt: skip
    extra: dict[str, Any] = {"options": options, "connect_timeout": CONNECT_TIMEOUT_S,
                             "application_name": "cdp-sql-trait"}  # fmt: skip
    try:
        if isinstance(target, str):
            conn = psycopg.connect(target, autocommit=False, **extra)
        else:
            conn = psycopg.connect(autocommit=False, **target, **extra)
    except psycopg.Error as exc:
        raise WarehouseError(f"Could not connect to the SQL traits database: {_first_line(exc)}") from None
    try:
        conn.read_only = True  # BEGIN READ ONLY
        with conn.cursor(name="sql_trait") as cursor:
            try:
                cursor.execute(query)
                columns = tuple(d.name for d in cursor.description or ())
            except psycopg.Error as exc:
                raise _pg_error(exc) from None
            yield Result(columns, _limited(_pg_fetch(cursor), deadline))
    finally:
        with suppress(psycopg.Error):  # a connection gone has committed nothing either
            conn.rollback()  # nothing to keep, whatever was tried
        conn.close()


def _pg_fetch(cursor: Any) -> Iterator[Sequence[Any]]:
    while True:
        try:
            chunk = cursor.fetchmany(FETCH_ROWS)
        except psycopg.Error as exc:
            raise _pg_error(exc) from None
        if not chunk:
            return
        yield from chunk


def _pg_error(exc: psycopg.Error) -> WarehouseError:
    if isinstance(exc, psycopg.errors.QueryCanceled):
        return WarehouseError(_timed_out())
    return WarehouseError(f"The query failed: {_first_line(exc)}")


def _first_line(exc: Exception) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:500]


# --- SQLite -------------------------------------------------------------------------------------


@contextmanager
def _sqlite(path: str, query: str, deadline: float) -> Iterator[Result]:
    if not path or path == ":memory:" or path.startswith("file:"):
        raise WarehouseError("SQL traits need a SQLite database file to open read-only.")
    try:
        conn = sqlite3.connect(f"file:{quote(path)}?mode=ro", uri=True, timeout=_timeout(), check_same_thread=False)
    except sqlite3.Error as exc:
        raise WarehouseError(f"Could not open the SQL traits database read-only: {exc}") from None
    try:
        conn.execute("PRAGMA query_only = ON")
        conn.set_progress_handler(lambda: int(time.monotonic() > deadline), SQLITE_PROGRESS_STEPS)
        try:
            cursor = conn.execute(query)
        except (sqlite3.Error, sqlite3.Warning) as exc:  # Warning: "You can only execute one statement at a time."
            raise _sqlite_error(exc) from None
        columns = tuple(str(d[0]) for d in cursor.description or ())
        yield Result(columns, _limited(_sqlite_fetch(cursor), deadline))
    finally:
        conn.close()


def _sqlite_fetch(cursor: sqlite3.Cursor) -> Iterator[Sequence[Any]]:
    while True:
        try:
            chunk = cursor.fetchmany(FETCH_ROWS)
        except sqlite3.Error as exc:
            raise _sqlite_error(exc) from None
        if not chunk:
            return
        yield from chunk


def _sqlite_error(exc: Exception) -> WarehouseError:
    if "interrupted" in str(exc):
        return WarehouseError(_timed_out())
    return WarehouseError(f"The query failed: {exc}")
