"""Filters: one vocabulary of operators for event properties (computed traits, audience event
conditions) and for traits (audience trait conditions). Pure.

A filter is `{"property": "revenue", "op": ">", "value": 0}` (`"trait"` instead of
`"property"` in a trait condition). Types are honest:

- a number compares as a number, and a numeric string ("42") as a number where the
  operator is numeric (`=`, `!=`, `<` … and `one_of` with numbers);
- a boolean matches a JSON boolean or the strings "true"/"false";
- a string compares as a string (codepoint order for `<` …);
- `contains`, `not_contains`, `starts_with`, `ends_with` take a string, ignore the case of
  ASCII letters, and on a list look at its string elements;
- the date operators read ISO 8601 strings (`2026-05-01`, `2026-05-01T10:00:00Z`,
  `…+02:00`); anything else is not a date;
- a value of another type, or a missing one, never matches; the negative operators
  (`!=`, `none_of`, `not_contains`, `not_exists`) are exactly "not the positive one", so a
  missing property satisfies them.

`compile_filter` writes a filter as SQL for a dialect; `filter_matches` is the same
semantics in plain Python, the reference the SQL is tested against.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from profiles.query.dialects import ISO_RE, NUMERIC_RE, Dialect, Subject
from profiles.query.sql import Sql, fmt, join, value

OPERATORS = (
    "=", "!=", "<", "<=", ">", ">=", "one_of", "none_of", "contains", "not_contains", "starts_with", "ends_with",
    "exists", "not_exists", "before_date", "after_date", "within_last_days", "before_last_days",
)  # fmt: skip
_NEGATIVE = {"!=": "=", "none_of": "one_of", "not_contains": "contains", "not_exists": "exists"}
_TEXT_OPS = ("contains", "starts_with", "ends_with")
_ORDER = ("<", "<=", ">", ">=")
Scalar = int | float | str | bool


class QueryError(ValueError):
    """A definition that cannot be used; `path` names the bad node or field (a JSON path
    such as `where[1].value` or `$.all[0].event`)."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path, self.message = path, message


@dataclass(frozen=True, slots=True)
class Filter:
    path: tuple[str, ...]  # the property's dotted path, or a trait key as one element
    op: str
    value: Any = None


def _number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def parse_date(text: Any) -> datetime | None:
    """An ISO 8601 date or time as an aware instant (no zone: UTC); None if it is not one."""
    if not isinstance(text, str) or not _ISO.match(text):
        return None
    try:
        at = datetime.fromisoformat(text)
    except ValueError:
        return None
    return at if at.tzinfo else at.replace(tzinfo=UTC)


_ISO = re.compile(ISO_RE)
_NUMERIC = re.compile(NUMERIC_RE)


def parse_filter(data: Any, *, where: str, key: str = "property") -> Filter:
    """A filter from its JSON, validated; `QueryError` names the field (`where.op`, …)."""
    if not isinstance(data, Mapping):
        raise QueryError(where, f'A filter is an object: {{"{key}": …, "op": …, "value": …}}.')
    unknown = set(data) - {key, "op", "value"}
    if unknown:
        raise QueryError(f"{where}.{sorted(unknown)[0]}", f"Unknown field; a filter has {key}, op and value.")
    name = data.get(key)
    if not isinstance(name, str) or not name.strip():
        raise QueryError(f"{where}.{key}", f"The {key} to filter on is required (a name; dotted for nested ones).")
    path = tuple(name.split(".")) if key == "property" else (name,)
    if any(not part for part in path):
        raise QueryError(f"{where}.{key}", f"{name!r} is not a property path.")
    op = data.get("op")
    if op not in OPERATORS:
        raise QueryError(f"{where}.op", f"Unknown operator {op!r}; one of: {', '.join(OPERATORS)}.")
    return Filter(path, str(op), _checked_value(op, data.get("value"), f"{where}.value"))


def _checked_value(op: str, v: Any, where: str) -> Any:
    if op in ("exists", "not_exists"):
        if v is not None:
            raise QueryError(where, f"{op} takes no value.")
        return None
    if op in ("=", "!="):
        if not isinstance(v, int | float | str | bool):
            raise QueryError(where, f"{op} compares with a number, a string or a boolean.")
        return v
    if op in _ORDER:
        if isinstance(v, bool) or not isinstance(v, int | float | str):
            raise QueryError(where, f"{op} compares with a number or a string.")
        return v
    if op in ("one_of", "none_of"):
        if not isinstance(v, list) or not v or not all(isinstance(x, int | float | str | bool) for x in v):
            raise QueryError(where, f"{op} takes a non-empty list of numbers, strings or booleans.")
        return tuple(v)
    if op in (*_TEXT_OPS, "not_contains"):
        if not isinstance(v, str) or not v:
            raise QueryError(where, f"{op} takes a non-empty string.")
        return v
    if op in ("before_date", "after_date"):
        if parse_date(v) is None:
            raise QueryError(where, f"{op} takes an ISO 8601 date, e.g. 2026-05-01 or 2026-05-01T10:00:00Z.")
        return v
    # within_last_days, before_last_days
    if not _number(v) or v <= 0 or v > 36500:
        raise QueryError(where, f"{op} takes a number of days, more than 0.")
    return v


def filter_json(f: Filter, *, key: str = "property") -> dict[str, Any]:
    """The JSON of a filter, as `parse_filter` reads it."""
    out: dict[str, Any] = {key: ".".join(f.path), "op": f.op}
    if f.op not in ("exists", "not_exists"):
        out["value"] = list(f.value) if isinstance(f.value, tuple) else f.value
    return out


# --- SQL ------------------------------------------------------------------------------------


def _like(text: str, op: str) -> str:
    escaped = _ascii_lower(text).replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return {"contains": f"%{escaped}%", "starts_with": f"{escaped}%", "ends_with": f"%{escaped}"}[op]


def _lower(d: Dialect, expr: Sql) -> Sql:
    # ASCII letters only, in both databases (PostgreSQL's lower() under the C collation,
    # SQLite's lower() always), and in the Python reference.
    return fmt('lower({e} COLLATE "C")', e=expr) if d.name == "postgresql" else fmt("lower({e})", e=expr)


def _text_order(d: Dialect, expr: Sql) -> Sql:
    return fmt('({e} COLLATE "C")', e=expr) if d.name == "postgresql" else expr


def _equals(d: Dialect, s: Subject, v: Scalar) -> Sql:
    if isinstance(v, bool):
        return fmt("{f} = {v}", f=s.flag, v=d_bool(d, v))
    if isinstance(v, int | float):
        return fmt("{n} = {v}", n=s.num, v=d_number(d, v))
    if d.name == "postgresql":
        # The same test (a string, and equal), as one jsonb comparison: no type test and no
        # second extraction of the value.
        return fmt("{j} = to_jsonb({v}::text)", j=s.json, v=value(v))
    return fmt("{t} = {v}", t=s.text, v=value(v))


def d_number(d: Dialect, v: int | float) -> Sql:
    if d.name == "postgresql":
        return fmt("{v}::numeric", v=value(Decimal(str(v))))
    return value(v)


def d_bool(d: Dialect, v: bool) -> Sql:
    return value(v) if d.name == "postgresql" else value(1 if v else 0)


def _positive(f: Filter, s: Subject, d: Dialect, now: datetime) -> Sql:
    op, v = f.op, f.value
    if op == "=":
        return _equals(d, s, v)
    if op in _ORDER:
        if isinstance(v, int | float):
            return fmt(f"{{n}} {op} {{v}}", n=s.num, v=d_number(d, v))
        return fmt(f"{{t}} {op} {{v}}", t=_text_order(d, s.text), v=_text_order(d, value(v)))
    if op == "one_of":
        return join([_equals(d, s, x).wrap() for x in v], " OR ")
    if op in _TEXT_OPS:
        pattern = value(_like(v, op))
        on_text = fmt("{t} LIKE {p} ESCAPE '\\'", t=_lower(d, s.text), p=pattern)
        on_list = fmt("EXISTS (SELECT 1 FROM ({e}) AS els WHERE {t} LIKE {p} ESCAPE '\\')",
                      e=s.elements, t=_lower(d, Sql("els.el")), p=pattern)  # fmt: skip
        return fmt("({a} OR {b})", a=on_text, b=on_list)
    if op == "exists":
        return fmt("({k} IS NOT NULL AND {k} <> 'null')", k=s.kind)
    if op == "before_date":
        return fmt("{w} < {at}", w=s.when, at=d.instant(_date(v)))
    if op == "after_date":
        return fmt("{w} > {at}", w=s.when, at=d.instant(_date(v)))
    if op == "within_last_days":
        return fmt("({w} >= {since} AND {w} <= {now})", w=s.when, since=d.instant(now - timedelta(days=v)),
                   now=d.instant(now))  # fmt: skip
    if op == "before_last_days":
        return fmt("{w} < {since}", w=s.when, since=d.instant(now - timedelta(days=v)))
    raise AssertionError(op)  # pragma: no cover - parse_filter admits only OPERATORS


def _date(text: str) -> datetime:
    at = parse_date(text)
    assert at is not None  # validated by parse_filter
    return at


def compile_filter(f: Filter, s: Subject, d: Dialect, *, now: datetime) -> Sql:
    """The filter as an SQL condition that is TRUE or FALSE, never NULL."""
    if f.op in _NEGATIVE:
        positive = Filter(f.path, _NEGATIVE[f.op], f.value)
        return fmt("NOT COALESCE({p}, FALSE)", p=_positive(positive, s, d, now))
    return fmt("COALESCE({p}, FALSE)", p=_positive(f, s, d, now))


# --- The plain-Python reference ---------------------------------------------------------------

_MISSING = object()
_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def _ascii_lower(text: str) -> str:
    return text.translate(_ASCII_LOWER)


def lookup(document: Any, path: Sequence[str]) -> Any:
    """The value at `path` in a JSON document, or `MISSING`."""
    node = document
    for key in path:
        if not isinstance(node, dict) or key not in node:
            return _MISSING
        node = node[key]
    return node


MISSING = _MISSING


def as_number(v: Any) -> Decimal | None:
    if _number(v):
        return Decimal(str(v))
    if isinstance(v, str) and _NUMERIC.match(v):
        try:
            return Decimal(v.strip())
        except InvalidOperation:  # pragma: no cover - the pattern admits only numbers
            return None
    return None


def _as_flag(v: Any) -> bool | None:
    if isinstance(v, bool):
        return v
    if isinstance(v, str) and v.lower() in ("true", "false"):
        return v.lower() == "true"
    return None


def _eq(actual: Any, v: Scalar) -> bool:
    if isinstance(v, bool):
        return _as_flag(actual) is v
    if _number(v):
        n = as_number(actual)
        return n is not None and n == Decimal(str(v))
    return isinstance(actual, str) and actual == v


def _text_match(actual: Any, op: str, v: str) -> bool:
    needle = _ascii_lower(v)

    def one(text: str) -> bool:
        t = _ascii_lower(text)
        return needle in t if op == "contains" else t.startswith(needle) if op == "starts_with" else t.endswith(needle)

    if isinstance(actual, str):
        return one(actual)
    return isinstance(actual, list) and any(isinstance(x, str) and one(x) for x in actual)


def _compare(a: Any, op: str, b: Any) -> bool:
    return {"<": a < b, "<=": a <= b, ">": a > b, ">=": a >= b}[op]


def filter_matches(f: Filter, document: Any, *, now: datetime) -> bool:
    """Whether the JSON `document` (event properties, or traits) passes the filter."""
    if f.op in _NEGATIVE:
        return not filter_matches(Filter(f.path, _NEGATIVE[f.op], f.value), document, now=now)
    actual = lookup(document, f.path)
    return value_matches(f, actual, now=now)


def value_matches(f: Filter, actual: Any, *, now: datetime) -> bool:
    """Whether one value (`MISSING` if absent) passes the filter."""
    op, v = f.op, f.value
    if op in _NEGATIVE:
        return not value_matches(Filter(f.path, _NEGATIVE[op], v), actual, now=now)
    if actual is _MISSING:
        return False
    if op == "=":
        return _eq(actual, v)
    if op in _ORDER:
        if _number(v):
            n = as_number(actual)
            return n is not None and _compare(n, op, Decimal(str(v)))
        return isinstance(actual, str) and _compare(actual, op, v)
    if op == "one_of":
        return any(_eq(actual, x) for x in v)
    if op in _TEXT_OPS:
        return _text_match(actual, op, v)
    if op == "exists":
        return actual is not None
    when = parse_date(actual)
    if when is None:
        return False
    if op == "before_date":
        return when < _date(v)
    if op == "after_date":
        return when > _date(v)
    if op == "within_last_days":
        return now - timedelta(days=v) <= when <= now
    return when < now - timedelta(days=v)  # before_last_days
