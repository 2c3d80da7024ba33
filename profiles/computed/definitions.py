"""Computed trait definitions, validated into frozen data. Pure.

A definition is what the API and the admin send (Segment's computed traits, plus scores):

    {"key": "orders_90d", "name": "Orders, 90 days", "type": "counter", "event": "Order Completed",
     "where": [{"property": "revenue", "op": ">", "value": 0}], "window_days": 90}
    {"key": "lead_score", "type": "score", "half_life_days": 30,
     "rules": [{"event": "Email Opened", "points": 1}, {"event": "Email Link Clicked", "points": 3}]}

`definition_parse` raises `QueryError` naming the bad field.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from profiles.query.filters import Filter, QueryError, filter_json, parse_filter

TYPES = (
    "counter", "sum", "avg", "min", "max", "most_frequent", "first", "last", "unique_list", "unique_count", "score",
)  # fmt: skip
NUMERIC = ("sum", "avg", "min", "max")
WITH_PROPERTY = (*NUMERIC, "most_frequent", "first", "last", "unique_list", "unique_count")
KEY_RE = re.compile(r"^[a-z][a-z0-9]*(_[a-z0-9]+)*$")
MAX_KEY = 64
MAX_RULES = 50
FIELDS = ("type", "event", "property", "where", "window_days", "min_frequency", "rules", "half_life_days")


@dataclass(frozen=True, slots=True)
class ScoreRule:
    event: str
    where: tuple[Filter, ...]
    points: float


@dataclass(frozen=True, slots=True)
class TraitDefinition:
    key: str
    type: str
    event: str | None = None
    prop: tuple[str, ...] | None = None  # the property read, as a path
    where: tuple[Filter, ...] = ()
    window_days: int | None = None
    min_frequency: int = 2
    rules: tuple[ScoreRule, ...] = ()
    half_life_days: float | None = None

    @property
    def events(self) -> frozenset[str]:
        """The event names whose new events can change a value."""
        return frozenset(r.event for r in self.rules) if self.type == "score" else frozenset({self.event or ""})

    @property
    def time_dependent(self) -> bool:
        """Whether values change with time alone (a window, or decay): recomputed on a schedule."""
        return self.window_days is not None or self.half_life_days is not None


def key_check(key: Any, *, field: str = "key") -> str:
    if not isinstance(key, str) or not KEY_RE.match(key) or len(key) > MAX_KEY:
        raise QueryError(field, f"A key is snake_case (lowercase letters, digits, single underscores), at most "
                                f"{MAX_KEY} characters, starting with a letter: {key!r} is not.")  # fmt: skip
    return key


def _event(value: Any, field: str) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > 200:
        raise QueryError(field, "The event name is required: a track event, or Page Viewed / Screen Viewed.")
    return value


def _filters(value: Any, field: str) -> tuple[Filter, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise QueryError(field, "A list of filters.")
    return tuple(parse_filter(item, where=f"{field}[{i}]") for i, item in enumerate(value))


def _positive(value: Any, field: str, *, integer: bool, at_most: float) -> Any:
    ok = isinstance(value, int | float) and not isinstance(value, bool) and (not integer or float(value).is_integer())
    if not ok or value <= 0 or value > at_most:
        kind = "a whole number" if integer else "a number"
        raise QueryError(field, f"{kind} greater than 0 (at most {at_most:g}).")
    return int(value) if integer else float(value)


def definition_parse(data: Mapping[str, Any]) -> TraitDefinition:
    """A definition from its JSON (the key and the fields in `FIELDS`; others are ignored
    here: name, description, schedule belong to the model)."""
    key = key_check(data.get("key"))
    kind = data.get("type")
    if kind not in TYPES:
        raise QueryError("type", f"Unknown type {kind!r}; one of: {', '.join(TYPES)}.")
    window = data.get("window_days")
    window_days = None if window is None else _positive(window, "window_days", integer=True, at_most=36500)
    if kind == "score":
        for field in ("event", "property", "where", "min_frequency"):
            if data.get(field) is not None:
                raise QueryError(field, "A score has rules (each with its event, where and points) instead.")
        rules = data.get("rules")
        if not isinstance(rules, list) or not rules or len(rules) > MAX_RULES:
            raise QueryError("rules", f"A score needs 1 to {MAX_RULES} rules: {{event, where, points}}.")
        parsed = []
        for i, rule in enumerate(rules):
            if not isinstance(rule, Mapping) or set(rule) - {"event", "where", "points"}:
                raise QueryError(f"rules[{i}]", "A rule is {event, where, points}.")
            points = rule.get("points")
            if not isinstance(points, int | float) or isinstance(points, bool) or abs(points) > 1e9:
                raise QueryError(f"rules[{i}].points", "Points are a number.")
            parsed.append(ScoreRule(_event(rule.get("event"), f"rules[{i}].event"),
                                    _filters(rule.get("where"), f"rules[{i}].where"), float(points)))  # fmt: skip
        half = data.get("half_life_days")
        half_life = None if half is None else _positive(half, "half_life_days", integer=False, at_most=36500)
        return TraitDefinition(key, kind, rules=tuple(parsed), window_days=window_days, half_life_days=half_life)
    for field in ("rules", "half_life_days"):
        if data.get(field) is not None:
            raise QueryError(field, f"Only a score has {field}.")
    prop = data.get("property")
    path: tuple[str, ...] | None = None
    if kind in WITH_PROPERTY:
        if not isinstance(prop, str) or not prop.strip() or any(not p for p in prop.split(".")):
            raise QueryError("property", f"A {kind} trait reads a property: its name, dotted for a nested one.")
        path = tuple(prop.split("."))
    elif prop is not None:
        raise QueryError("property", "A counter counts events: it reads no property.")
    min_frequency = 2
    if kind == "most_frequent" and data.get("min_frequency") is not None:
        min_frequency = _positive(data["min_frequency"], "min_frequency", integer=True, at_most=1e6)
    elif kind != "most_frequent" and data.get("min_frequency") is not None:
        raise QueryError("min_frequency", "Only a most_frequent trait has min_frequency.")
    return TraitDefinition(
        key, kind, event=_event(data.get("event"), "event"), prop=path, where=_filters(data.get("where"), "where"),
        window_days=window_days, min_frequency=min_frequency,
    )  # fmt: skip


def definition_json(d: TraitDefinition) -> dict[str, Any]:
    """The definition's fields as the API shows them (and `definition_parse` reads them)."""
    out: dict[str, Any] = {"type": d.type, "window_days": d.window_days}
    if d.type == "score":
        out["rules"] = [{"event": r.event, "where": [filter_json(f) for f in r.where], "points": r.points}
                        for r in d.rules]  # fmt: skip
        out["half_life_days"] = d.half_life_days
        return out
    out["event"] = d.event
    out["property"] = ".".join(d.prop) if d.prop else None
    out["where"] = [filter_json(f) for f in d.where]
    if d.type == "most_frequent":
        out["min_frequency"] = d.min_frequency
    return out
