"""A computed trait definition as one set-based SQL query over the event log, pure: the
same query serves the whole population (a full recompute) and a given set of profiles
(real time), so both give the same values.

The query answers `(profile_id, value)` for every profile with a value: `value` is JSON
(jsonb on PostgreSQL, JSON text on SQLite). A profile with no matching event has none.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from profiles.computed.definitions import NUMERIC, TraitDefinition
from profiles.query.dialects import Dialect
from profiles.query.events import EVENTS, event_match, event_time, events_of
from profiles.query.filters import Filter, compile_filter
from profiles.query.sql import Sql, fmt, join, value


@dataclass(frozen=True, slots=True)
class CompiledTrait:
    sql: Sql
    # SQLite (before 3.44) has no ordered aggregate: a unique list comes back unordered, and
    # its reader sorts it.
    sort_lists: bool = False


def _base(defn: TraitDefinition, d: Dialect, now: datetime, profile_ids: Sequence[int] | None) -> list[Sql]:
    where = [Sql("e.profile_id IS NOT NULL")]
    if defn.window_days is not None:
        where.append(fmt("e.timestamp >= {since}", since=event_time(d, now - timedelta(days=defn.window_days))))
    if profile_ids is not None and d.name != "postgresql":  # PostgreSQL reads them through `events_of`
        where.append(d.ids_in("e.profile_id", profile_ids))
    return where


def _filters(filters: Sequence[Filter], d: Dialect, now: datetime) -> list[Sql]:
    return [compile_filter(f, d.subject("e.properties", f.path), d, now=now) for f in filters]


def compile_trait(
    defn: TraitDefinition, d: Dialect, *, now: datetime, profile_ids: Sequence[int] | None = None, table: str = EVENTS
) -> CompiledTrait:
    """`SELECT profile_id, value` for the definition at `now`, over every profile or only
    `profile_ids`."""
    where = _base(defn, d, now, profile_ids)
    if profile_ids is not None:
        table = events_of(d, table, profile_ids) or table
    if defn.type == "score":
        return CompiledTrait(_score(defn, d, now, where, table))
    assert defn.event is not None
    where.append(event_match(defn.event))
    where += _filters(defn.where, d, now)
    if defn.type == "counter":
        return CompiledTrait(_grouped(table, where, d.json_number(Sql("count(*)"))))
    assert defn.prop is not None
    s = d.subject("e.properties", defn.prop)
    if defn.type in NUMERIC:
        where.append(fmt("{n} IS NOT NULL", n=s.num))
        of = {"sum": "sum({n})", "min": "min({n})", "max": "max({n})", "avg": "round(avg({n}), 6)"}[defn.type]
        return CompiledTrait(_grouped(table, where, d.json_number(fmt(of, n=s.num))))
    scalar = fmt("{k} IN ('string', 'number', 'boolean')", k=s.kind)
    text = _scalar_text(d, s.json, s.kind)
    if defn.type == "unique_count":
        return CompiledTrait(_grouped(table, [*where, scalar], d.json_number(fmt("count(DISTINCT {t})", t=text))))
    if defn.type == "unique_list":
        if d.name == "postgresql":
            agg = fmt('jsonb_agg(DISTINCT ({t} COLLATE "C") ORDER BY ({t} COLLATE "C"))', t=text)
            return CompiledTrait(_grouped(table, [*where, scalar], agg))
        return CompiledTrait(_grouped(table, [*where, scalar], fmt("json_group_array(DISTINCT {t})", t=text)), True)
    if defn.type in ("first", "last"):
        return CompiledTrait(_edge(table, where, s.json, s.kind, d, last=defn.type == "last"))
    if defn.type == "most_frequent":
        return CompiledTrait(_mode(table, [*where, scalar], s.json, text, s.kind, d, defn.min_frequency))
    raise AssertionError(defn.type)  # pragma: no cover - definition_parse admits only TYPES


def _scalar_text(d: Dialect, json: Sql, kind: Sql) -> Sql:
    """A scalar's text form: what unique lists hold and what ties are broken by."""
    if d.name == "postgresql":
        return fmt("({j} #>> '{}')", j=json)
    # SQLite's JSON text of a string is quoted: take the string itself.
    return fmt("CASE WHEN {k} = 'string' THEN json_extract({j}, '$') ELSE {j} END", k=kind, j=json)


def _grouped(table: str, where: list[Sql], agg: Sql) -> Sql:
    return fmt(
        f"SELECT e.profile_id AS profile_id, {{agg}} AS value FROM {table} e WHERE {{w}} GROUP BY e.profile_id",
        agg=agg, w=join(where, " AND "),
    )  # fmt: skip


def _edge(table: str, where: list[Sql], json: Sql, kind: Sql, d: Dialect, *, last: bool) -> Sql:
    direction = "DESC" if last else "ASC"
    present = fmt("({k} IS NOT NULL AND {k} <> 'null')", k=kind)
    w = join([*where, present], " AND ")
    if d.name == "postgresql":
        return fmt(
            f"SELECT DISTINCT ON (e.profile_id) e.profile_id AS profile_id, {{j}} AS value FROM {table} e "
            f"WHERE {{w}} ORDER BY e.profile_id, e.timestamp {direction}, e.id {direction}",
            j=json, w=w,
        )  # fmt: skip
    return fmt(
        f"SELECT profile_id, value FROM (SELECT e.profile_id AS profile_id, {{j}} AS value, row_number() OVER "
        f"(PARTITION BY e.profile_id ORDER BY e.timestamp {direction}, e.id {direction}) AS place FROM {table} e "
        f"WHERE {{w}}) AS ranked WHERE place = 1",
        j=json, w=w,
    )  # fmt: skip


def _mode(table: str, where: list[Sql], json: Sql, text: Sql, kind: Sql, d: Dialect, min_frequency: int) -> Sql:
    if d.name == "postgresql":
        # DISTINCT ON keeps one row per profile from one sort (a window function sorts and
        # numbers every group first); grouping on the text and its JSON type is cheaper than
        # on the JSON value, and tells "5" from 5 alike. Values under min_frequency never win.
        return fmt(
            "SELECT DISTINCT ON (profile_id) profile_id, CASE WHEN k = 'string' THEN to_jsonb(t) ELSE t::jsonb END "
            "AS value FROM (SELECT e.profile_id AS profile_id, {t} AS t, {k} AS k, count(*) AS n "
            f"FROM {table} e WHERE {{w}} GROUP BY 1, 2, 3 HAVING count(*) >= {{m}}) AS counted "
            'ORDER BY profile_id, n DESC, t COLLATE "C"',
            t=text, k=kind, w=join(where, " AND "), m=value(min_frequency),
        )  # fmt: skip
    return fmt(
        "SELECT profile_id, value FROM (SELECT e.profile_id AS profile_id, {j} AS value, count(*) AS n, "
        "row_number() OVER (PARTITION BY e.profile_id ORDER BY count(*) DESC, min({t})) AS place "
        f"FROM {table} e WHERE {{w}} GROUP BY e.profile_id, {{j}}) AS counted WHERE place = 1 AND n >= {{m}}",
        j=json, t=text, w=join(where, " AND "), m=value(min_frequency),
    )  # fmt: skip


def _score(defn: TraitDefinition, d: Dialect, now: datetime, where: list[Sql], table: str) -> Sql:
    """Each matching event is worth the points of every rule it matches, decayed by half
    every half-life from the event's timestamp; the value is their sum, to two decimals."""
    rules = []
    points = []
    for rule in defn.rules:
        matched = join([event_match(rule.event), *_filters(rule.where, d, now)], " AND ")
        rules.append(matched.wrap())
        points.append(fmt("CASE WHEN {m} THEN {p} ELSE 0 END", m=matched, p=value(rule.points)))
    worth = join(points, " + ").wrap()
    if defn.half_life_days is not None:
        age = d.days_between(d.instant(now), d.column_instant("e.timestamp"))
        if d.name == "postgresql":
            # In double precision: numeric's power() costs ~20 µs an event, six times the scan.
            worth = fmt("{w}::float8 * power(0.5::float8, greatest({age}::float8, 0) / {h}::float8)",
                        w=worth, age=age, h=value(defn.half_life_days))  # fmt: skip
        else:
            worth = fmt("{w} * power(0.5, max({age}, 0) / {h})", w=worth, age=age, h=value(defn.half_life_days))
    total = (
        fmt("round(CAST(sum({w}) AS numeric), 2)", w=worth)
        if d.name == "postgresql"
        else fmt("round(sum({w}), 2)", w=worth)
    )
    return _grouped(table, [*where, join(rules, " OR ").wrap()], d.json_number(total))


def compile_candidates(
    defn: TraitDefinition, d: Dialect, *, since: datetime, until: datetime, table: str = EVENTS
) -> Sql:
    """The profiles whose windowed value can have changed between two scheduled runs: those
    with a matching event that left the window meanwhile (timestamp in (since, until])."""
    names = [event_match(n) for n in sorted(defn.events)]
    return fmt(
        f"SELECT DISTINCT e.profile_id FROM {table} e WHERE e.profile_id IS NOT NULL AND ({{n}}) "
        "AND e.timestamp > {a} AND e.timestamp <= {b}",
        n=join(names, " OR "), a=event_time(d, since), b=event_time(d, until),
    )  # fmt: skip
