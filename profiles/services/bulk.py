"""Bulk writes for the hot path: one statement for many rows.

On PostgreSQL, `UPDATE … FROM unnest(arrays)` with server-side binding: a single round
trip whatever the row count, and no per-row SQL to build. Elsewhere, `executemany`.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import orjson
import psycopg
from django.db import connection


def pg_cursor() -> psycopg.Cursor[Any]:
    """A cursor on Django's connection (so in its transaction) with server-side binding."""
    connection.ensure_connection()
    raw = connection.connection
    assert raw is not None
    return psycopg.Cursor(raw)


def _plain(value: Any) -> Any:
    if isinstance(value, dict | list):
        return orjson.dumps(value).decode()
    if isinstance(value, datetime) and connection.vendor != "postgresql":
        return connection.ops.adapt_datetimefield_value(value)
    return value


def rows_update(
    *,
    table: str,
    columns: Sequence[tuple[str, str]],
    rows: Sequence[Sequence[Any]],
    key: tuple[str, str] = ("id", "bigint"),
    set_sql: dict[str, str] | None = None,
) -> None:
    """Set `columns` (name, PostgreSQL type) from `rows`, each `(key, *values)`.

    `set_sql` overrides the expression of a column, with `{new}` for the incoming value and
    `{old}` for the current one, e.g. `GREATEST({old}, {new})` (LEAST/GREATEST become
    MIN/MAX on SQLite)."""
    if not rows:
        return
    set_sql = set_sql or {}
    names = [name for name, _ in columns]
    if connection.vendor == "postgresql":
        exprs = {n: set_sql.get(n, "{new}").format(old=f"{table}.{n}", new=f"v.{n}") for n in names}
        types = [key[1], *(t for _, t in columns)]
        sql = (
            f"UPDATE {table} SET " + ", ".join(f"{n} = {exprs[n]}" for n in names)
            + " FROM unnest(" + ", ".join(f"%b::{t}[]" for t in types) + f") AS v({key[0]}, {', '.join(names)})"
            + f" WHERE {table}.{key[0]} = v.{key[0]}"
        )  # fmt: skip
        arrays = [[_plain(row[i]) for row in rows] for i in range(len(names) + 1)]
        with pg_cursor() as cursor:
            cursor.execute(sql, arrays)
        return
    parts, uses = [], []
    for i, n in enumerate(names, start=1):
        expr = set_sql.get(n, "{new}").replace("GREATEST", "MAX").replace("LEAST", "MIN")
        uses += [i] * expr.count("{new}")
        parts.append(f"{n} = " + expr.format(old=n, new="%s"))
    sql = f"UPDATE {table} SET {', '.join(parts)} WHERE {key[0]} = %s"
    params = [[_plain(row[i]) for i in uses] + [row[0]] for row in rows]
    with connection.cursor() as cursor:
        cursor.executemany(sql, params)
