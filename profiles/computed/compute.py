"""Running a computed trait's query and writing only what changed: the values, a
`ComputedTraitChange` per changed value, and the change feed.

One compiled query (`compiler.compile_trait`) serves every scope: all profiles (a full
recompute) or a set of them (real time, or the profiles a window's edge passed). On
PostgreSQL the difference with the current values is taken, and applied, in one statement
(the new values, joined in full with the current ones: changed, new and gone values are
upserted, deleted and recorded together); on SQLite, in Python over the same query's rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from django.db import connection

from profiles.computed.compiler import compile_trait
from profiles.computed.definitions import TraitDefinition
from profiles.computed.models import ComputedTraitChange, ComputedTraitValue
from profiles.models import Event
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
    *, trait_id: int, defn: TraitDefinition, now: datetime, profile_ids: Sequence[int] | None, keep_rows: bool
) -> Diff:
    """Compute the trait for `profile_ids` (None: everyone), write what changed (values,
    history), and return it. Runs in the caller's transaction."""
    d = dialect_named(connection.vendor)
    compiled = compile_trait(defn, d, now=now, profile_ids=profile_ids, table=_EVENTS)
    if d.name == "postgresql":
        return _apply_postgres(trait_id, defn.key, compiled.sql, now, profile_ids, keep_rows)
    return _apply_python(trait_id, defn.key, compiled.sql, now, profile_ids, sort_lists=compiled.sort_lists)


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
