"""Bulk writes for the hot path: one statement for many rows.

On PostgreSQL, `INSERT … SELECT FROM unnest(arrays)` and `UPDATE … FROM unnest(arrays)`
with server-side binding: a single round trip whatever the row count, and no per-row SQL
to build (the ORM's bulk_create spent more time compiling than PostgreSQL spent
inserting). Elsewhere, multi-row VALUES and `executemany`.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import orjson
from django.db import connection

from profiles.db import pg_cursor

# A resolution statement takes 1-90 ms (measured mid-run on 672k events, the slowest a
# merge re-pointing its events); a minute is a plan gone wrong, not a busy machine. The
# error is transient: the task retries.
RESOLUTION_STATEMENT_TIMEOUT_MS = 60_000
# Resolution waits on another worker's transaction (~100 ms) in its second pass. Twenty
# seconds means something else holds the identity tables, such as `rebuild_identities`:
# the task gives up (LockNotAvailable, transient) and retries later.
RESOLUTION_LOCK_TIMEOUT_MS = 20_000


def resolution_settings() -> None:
    """The settings of a resolution transaction, on PostgreSQL, in one statement. Only in
    an outermost `atomic` block: never a caller's transaction. `SET LOCAL` ends with it.

    Commit without waiting for the WAL to reach the disk (`synchronous_commit = off`,
    measured 6 ms a commit here). Everything resolution writes derives from the event
    log, which ingest commits durably: a crash loses at most the last fraction of a second
    of it, whole transactions at a time, and the events they covered are still
    unprocessed, so the sweep resolves them again.

    Plan every statement as index lookups and nested loops, never a sequential scan or a
    hash join where an index can serve. Resolution's statements all find rows by key
    (events by id, identities by (kind, value) or profile, profiles by id). PostgreSQL
    plans from statistics that lag a table growing by thousands of rows a second (and
    never come where autovacuum is off), and with its default guesses an `= ANY` of a few
    hundred keys, or a join with an `unnest` of them, looked cheaper as a full scan:
    measured mid-run, identities by profile and a merge's re-pointing of events flipped to
    sequential scans of the whole table (50-90 ms a statement instead of 1-5).

    Give its statements and lock waits their own, longer limits than the edge's (the
    connection's): see RESOLUTION_STATEMENT_TIMEOUT_MS and RESOLUTION_LOCK_TIMEOUT_MS."""
    if connection.vendor == "postgresql" and len(connection.atomic_blocks) == 1:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT set_config('synchronous_commit', 'off', true), set_config('enable_seqscan', 'off', true), "
                "set_config('enable_hashjoin', 'off', true), set_config('enable_mergejoin', 'off', true), "
                f"set_config('statement_timeout', '{RESOLUTION_STATEMENT_TIMEOUT_MS}', true), "
                f"set_config('lock_timeout', '{RESOLUTION_LOCK_TIMEOUT_MS}', true)"
            )


Column = tuple[str, str]  # (name, PostgreSQL type)
Constant = tuple[str, str, Any]  # (name, PostgreSQL type, the value of every row)


def rows_insert(
    *,
    table: str,
    columns: Sequence[Column],
    rows: Sequence[Sequence[Any]],
    constants: Sequence[Constant] = (),
    returning: str | None = None,
    skip_conflicts: bool = False,
) -> list[Any]:
    """Insert `rows` (values in the order of `columns`), each with the `constants` too (one
    parameter each, not an array of the same value). Returns the `returning` column of
    each inserted row, in order. With `skip_conflicts`, rows that break a unique
    constraint are skipped (and return nothing)."""
    if not rows:
        return []
    names = ", ".join(name for name, *_ in (*columns, *constants))
    tail = (" ON CONFLICT DO NOTHING" if skip_conflicts else "") + (f" RETURNING {returning}" if returning else "")
    if connection.vendor == "postgresql":
        fixed = "".join(f", %b::{t}" for _, t, _ in constants)
        arrays = ", ".join(f"%b::{t}[]" for _, t in columns)
        params = [*(_pg_value(v, t) for _, t, v in constants), *_pg_arrays(rows, [t for _, t in columns])]
        with pg_cursor() as cursor:
            cursor.execute(f"INSERT INTO {table} ({names}) SELECT v.*{fixed} FROM unnest({arrays}) AS v{tail}", params)
            return [row[0] for row in cursor.fetchall()] if returning else []
    out: list[Any] = []
    width = len(columns) + len(constants)
    marks = "(" + ", ".join(["%s"] * width) + ")"
    per_statement = max(1, 900 // width)  # SQLite's bound-parameter limit
    fixed_values = [_plain(v) for _, _, v in constants]
    with connection.cursor() as cursor:
        for start in range(0, len(rows), per_statement):
            chunk = rows[start : start + per_statement]
            cursor.execute(
                f"INSERT INTO {table} ({names}) VALUES {', '.join([marks] * len(chunk))}{tail}",
                [value for row in chunk for value in (*map(_plain, row), *fixed_values)],
            )
            if returning:
                out.extend(row[0] for row in cursor.fetchall())
    return out


def _pg_value(value: Any, pg_type: str) -> Any:
    return orjson.dumps(value).decode() if pg_type in ("jsonb", "json") else value


def _pg_arrays(rows: Sequence[Sequence[Any]], types: Sequence[str]) -> list[list[Any]]:
    """Column arrays for `unnest`; JSON columns as text (psycopg binds the rest as is)."""
    return [
        [orjson.dumps(row[i]).decode() for row in rows] if pg_type in ("jsonb", "json") else [row[i] for row in rows]
        for i, pg_type in enumerate(types)
    ]


def _plain(value: Any) -> Any:
    if isinstance(value, dict | list):
        return orjson.dumps(value).decode()
    if isinstance(value, datetime) and connection.vendor != "postgresql":
        return connection.ops.adapt_datetimefield_value(value)
    return value


def rows_update(
    *,
    table: str,
    columns: Sequence[Column],
    rows: Sequence[Sequence[Any]],
    constants: Sequence[Constant] = (),
    key: Column = ("id", "bigint"),
    set_sql: dict[str, str] | None = None,
) -> None:
    """Set `columns` from `rows`, each `(key, *values)`, and `constants` on every row.

    `set_sql` overrides the expression of a column, with `{new}` for the incoming value and
    `{old}` for the current one, e.g. `GREATEST({old}, {new})` (LEAST/GREATEST become
    MIN/MAX on SQLite)."""
    if not rows:
        return
    set_sql = set_sql or {}
    names = [name for name, _ in columns]
    if connection.vendor == "postgresql":
        exprs = [f"{n} = " + set_sql.get(n, "{new}").format(old=f"{table}.{n}", new=f"v.{n}") for n in names]
        exprs += [
            f"{n} = " + set_sql.get(n, "{new}").format(old=f"{table}.{n}", new=f"%b::{t}") for n, t, _ in constants
        ]
        types = [key[1], *(t for _, t in columns)]
        sql = (
            f"UPDATE {table} SET " + ", ".join(exprs)
            + " FROM unnest(" + ", ".join(f"%b::{t}[]" for t in types) + f") AS v({', '.join([key[0], *names])})"
            + f" WHERE {table}.{key[0]} = v.{key[0]}"
        )  # fmt: skip
        params = [*(_pg_value(v, t) for _, t, v in constants), *_pg_arrays(rows, types)]
        with pg_cursor() as cursor:
            cursor.execute(sql, params)
        return
    parts, uses = [], []
    for i, n in enumerate([*names, *(n for n, _, _ in constants)], start=1):
        expr = set_sql.get(n, "{new}").replace("GREATEST", "MAX").replace("LEAST", "MIN")
        uses += [i] * expr.count("{new}")
        parts.append(f"{n} = " + expr.format(old=n, new="%s"))
    sql = f"UPDATE {table} SET {', '.join(parts)} WHERE {key[0]} = %s"
    fixed = tuple(v for _, _, v in constants)
    params = [[_plain((*row, *fixed)[i]) for i in uses] + [row[0]] for row in rows]
    with connection.cursor() as cursor:
        cursor.executemany(sql, params)


def rows_matching(
    *, table: str, select: Sequence[str], pair: tuple[Column, Column], keys: Sequence[tuple[Any, Any]]
) -> list[tuple[Any, ...]]:
    """The `select` columns of the rows of `table` whose two `pair` columns equal one of
    `keys`, in one statement on PostgreSQL: the keys as two arrays on a server-side-bound
    cursor, so one statement text whatever their number (a VALUES list was parsed and
    planned anew each time: 17 µs a resolved event). Elsewhere, VALUES lists."""
    if not keys:
        return []
    (a, a_type), (b, b_type) = pair
    head = f"SELECT {', '.join(select)} FROM {table} WHERE ({a}, {b}) IN "
    if connection.vendor == "postgresql":
        with pg_cursor(binary=True) as cursor:
            cursor.execute(
                head + f"(SELECT * FROM unnest(%b::{a_type}[], %b::{b_type}[]))",
                [[k[0] for k in keys], [k[1] for k in keys]],
            )
            return cursor.fetchall()
    found: list[tuple[Any, ...]] = []
    with connection.cursor() as cursor:
        for start in range(0, len(keys), 400):  # SQLite's bound-parameter limit
            chunk = keys[start : start + 400]
            cursor.execute(
                head + f"(VALUES {', '.join(['(%s, %s)'] * len(chunk))})", [part for key in chunk for part in key]
            )
            found.extend(cursor.fetchall())
    return found
