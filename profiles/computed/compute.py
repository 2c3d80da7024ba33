"""Running a computed trait's query and writing only what changed: the values, a
`ComputedTraitChange` per changed value, and the change feed.

One compiled query (`compiler.compile_trait`) serves every scope: all profiles (a full
recompute) or a set of them (real time, or the profiles a window's edge passed). On
PostgreSQL the difference with the current values is taken, and applied, in one statement
(the new values, joined in full with the current ones: changed, new and gone values are
upserted, deleted and recorded together); on SQLite, in Python over the same query's rows.
The admin's preview runs the same query for everyone and writes nothing (`values_read`).
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

import orjson
import psycopg
from django.db import OperationalError, connection, transaction

from destinations.outbox import routes, subscribed
from profiles.computed.compiler import compile_trait
from profiles.computed.definitions import TraitDefinition
from profiles.computed.models import ComputedTraitChange, ComputedTraitValue
from profiles.models import Event
from profiles.outbound import trait_deliveries
from profiles.query.dialects import dialect_named
from profiles.query.sql import Sql, fmt, value

_VALUES = ComputedTraitValue._meta.db_table
_CHANGES = ComputedTraitChange._meta.db_table
_EVENTS = Event._meta.db_table


@dataclass(frozen=True, slots=True)
class Diff:
    """What a run changed: the number of changed values, and (for a scoped run) which
    profiles, each with its old and new value (None: no value)."""

    changed: int
    rows: list[tuple[int, Any, Any]]


def _scope(profile_ids: Sequence[int] | None) -> Sql:
    d = dialect_named(connection.vendor)
    return Sql("") if profile_ids is None else fmt(" AND {c}", c=d.ids_in("v.profile_id", profile_ids))


def values_diff_apply(
    *,
    trait_id: int,
    defn: TraitDefinition,
    now: datetime,
    profile_ids: Sequence[int] | None,
    keep_rows: bool,
    events: str = _EVENTS,
) -> Diff:
    """Compute the trait for `profile_ids` (None: everyone) from `events` (the log, or a
    `events_scoped` copy holding theirs), write what changed (values, history, and what
    destinations that take the trait are owed), and return it. Runs in the caller's
    transaction."""
    d = dialect_named(connection.vendor)
    compiled = compile_trait(defn, d, now=now, profile_ids=profile_ids, table=events)
    # A destination that takes the trait is owed each change, in this transaction.
    found = routes()
    owed = bool(subscribed("trait", [defn.key], found=found))
    if d.name == "postgresql":
        diff = _apply_postgres(trait_id, defn.key, compiled.sql, now, profile_ids, keep_rows or owed)
    else:
        diff = _apply_python(trait_id, defn.key, compiled.sql, now, profile_ids, sort_lists=compiled.sort_lists)
    if owed:
        trait_deliveries(trait_id=trait_id, key=defn.key, rows=diff.rows, at=now, found=found)
    return diff


def _apply_postgres(
    trait_id: int, key: str, new: Sql, now: datetime, profile_ids: Sequence[int] | None, keep_rows: bool
) -> Diff:
    statement = fmt(
        "WITH new AS ({new}), "
        f"cur AS (SELECT v.profile_id, v.value FROM {_VALUES} v WHERE v.trait_id = {{t}}{{scope}}), "
        "diff AS (SELECT coalesce(n.profile_id, c.profile_id) AS profile_id, c.value AS old, n.value AS new "
        "FROM new n FULL JOIN cur c ON c.profile_id = n.profile_id WHERE c.value IS DISTINCT FROM n.value), "
        f"up AS (INSERT INTO {_VALUES} (trait_id, profile_id, value, computed_at) "
        "SELECT {t}, profile_id, new, {now} FROM diff WHERE new IS NOT NULL "
        "ON CONFLICT (trait_id, profile_id) DO UPDATE SET value = excluded.value, computed_at = excluded.computed_at), "
        f"gone AS (DELETE FROM {_VALUES} v USING diff WHERE v.trait_id = {{t}} AND v.profile_id = diff.profile_id "
        "AND diff.new IS NULL), "
        f"kept AS (INSERT INTO {_CHANGES} (profile_id, trait_id, key, old, new, at) "
        "SELECT profile_id, {t}, {key}, old, new, {now} FROM diff) "
        + ("SELECT profile_id, old, new FROM diff" if keep_rows else "SELECT count(*) FROM diff"),
        new=new, t=value(trait_id), scope=_scope(profile_ids), now=value(now), key=value(key),
    )  # fmt: skip
    with connection.cursor() as cursor:
        cursor.execute(statement.text, statement.params)
        rows = cursor.fetchall()
    if not keep_rows:
        return Diff(int(rows[0][0]), [])
    parsed = [(pid, _json(old), _json(new_)) for pid, old, new_ in rows]
    return Diff(len(parsed), parsed)


def _json(raw: Any) -> Any:
    return orjson.loads(raw) if isinstance(raw, str | bytes) else raw


def _apply_python(
    trait_id: int, key: str, new: Sql, now: datetime, profile_ids: Sequence[int] | None, *, sort_lists: bool
) -> Diff:
    with connection.cursor() as cursor:
        cursor.execute(new.text, new.params)
        fresh = {pid: _json(raw) for pid, raw in cursor.fetchall()}
    if sort_lists:
        fresh = {pid: sorted(v) if isinstance(v, list) else v for pid, v in fresh.items()}
    current_rows = ComputedTraitValue.objects.filter(trait_id=trait_id)
    if profile_ids is not None:
        current_rows = current_rows.filter(profile_id__in=list(profile_ids))
    current = dict(current_rows.values_list("profile_id", "value"))
    rows = [
        (pid, current.get(pid), fresh.get(pid))
        for pid in sorted(current.keys() | fresh.keys())
        if current.get(pid) != fresh.get(pid) or (pid in current) != (pid in fresh)
    ]
    upserts = [(pid, n) for pid, _, n in rows if n is not None]
    gone = [pid for pid, _, n in rows if n is None]
    for start in range(0, len(upserts), 300):
        chunk = upserts[start : start + 300]
        marks = ", ".join(["(%s, %s, %s, %s)"] * len(chunk))
        params: list[Any] = []
        for pid, n in chunk:
            params += [trait_id, pid, orjson.dumps(n).decode(), connection.ops.adapt_datetimefield_value(now)]
        with connection.cursor() as cursor:
            cursor.execute(
                f"INSERT INTO {_VALUES} (trait_id, profile_id, value, computed_at) VALUES {marks} "
                "ON CONFLICT (trait_id, profile_id) DO UPDATE SET value = excluded.value, "
                "computed_at = excluded.computed_at",
                params,
            )
    for start in range(0, len(gone), 500):
        ComputedTraitValue.objects.filter(trait_id=trait_id, profile_id__in=gone[start : start + 500]).delete()
    ComputedTraitChange.objects.bulk_create(
        [ComputedTraitChange(profile_id=pid, trait_id=trait_id, key=key, old=o, new=n, at=now) for pid, o, n in rows],
        batch_size=500,
    )
    return Diff(len(rows), rows)


# --- Reading without writing (the admin's preview) --------------------------------------------

# Rows fetched at a time while a preview reads a definition's values.
_READ_CHUNK = 5000


class ReadTooSlow(Exception):
    """A read-only run stopped at its time limit."""


def values_read(*, defn: TraitDefinition, now: datetime, keep: int, timeout_s: float) -> tuple[int, list[Any]]:
    """Run the definition's query for every profile, as a full recompute would, and write
    nothing: how many profiles would have a value, and up to `keep` of those values. On
    PostgreSQL it runs in a savepoint set read-only and rolled back, with `timeout_s` as
    its statement timeout; on SQLite (whose outermost transaction would take the write
    lock) as a plain read, interrupted past `timeout_s`. Raises `ReadTooSlow`."""
    d = dialect_named(connection.vendor)
    compiled = compile_trait(defn, d, now=now, table=_EVENTS)
    total, kept = 0, cast(list[Any], [])
    try:
        with _read_only(timeout_s), connection.cursor() as cursor:
            cursor.execute(compiled.sql.text, compiled.sql.params)
            while rows := cursor.fetchmany(_READ_CHUNK):
                total += len(rows)
                kept += [_json(raw) for _, raw in rows[: max(keep - len(kept), 0)]]
    except OperationalError as exc:
        if _cancelled(exc):
            raise ReadTooSlow(f"stopped after {timeout_s:g} s") from None
        raise
    if compiled.sort_lists:
        kept = [sorted(v) if isinstance(v, list) else v for v in kept]
    return total, kept


@contextmanager
def _read_only(timeout_s: float) -> Iterator[None]:
    if connection.vendor == "postgresql":
        with transaction.atomic():
            with connection.cursor() as cursor:
                cursor.execute("SET LOCAL transaction_read_only = on")
                cursor.execute(f"SET LOCAL statement_timeout = {int(timeout_s * 1000)}")
            yield
            transaction.set_rollback(True)  # nothing to keep; the settings go with it
        return
    connection.ensure_connection()
    deadline = time.monotonic() + timeout_s
    raw = connection.connection
    raw.set_progress_handler(lambda: int(time.monotonic() > deadline), 10_000)
    try:
        yield
    finally:
        raw.set_progress_handler(None, 0)


def _cancelled(exc: OperationalError) -> bool:
    if connection.vendor == "postgresql":
        return isinstance(exc.__cause__, psycopg.errors.QueryCanceled)
    return "interrupted" in str(exc)
