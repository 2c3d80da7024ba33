"""How the vocabulary's building blocks are written in PostgreSQL and in SQLite. Pure: a
dialect only builds SQL text and parameters.

A *subject* is a JSON value inside a row: an event property (`properties` at a dotted
path), a custom trait (`traits` at a key), a computed trait's value. Every operator is
written over a subject's typed views, each NULL when the value is missing or of another
type, so that a type mismatch never matches and never raises:

- `kind`: 'number', 'string', 'boolean', 'null', 'array' or 'object' (NULL if missing);
- `text`: a string's text;
- `num`: a number, or a numeric string ("42", " 1.5e3 ") read as one;
- `flag`: a boolean, or the strings "true"/"false" (any case) read as one;
- `when`: a string that is an ISO 8601 date or time, as a comparable instant;
- `elements`: a subquery of an array's elements as text (for contains on lists).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from profiles.query.sql import Sql, fmt, value

# A numeric string: what `num` reads as a number. The exponent has at most three digits,
# so no string can make a number too big for the database.
NUMERIC_RE = r"^\s*[-+]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][-+]?[0-9]{1,3})?\s*$"
# An ISO 8601 date, or date and time with an optional zone: what `when` reads as an instant.
ISO_RE = (
    r"^[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])"
    r"([T ]([01][0-9]|2[0-3]):[0-5][0-9](:[0-5][0-9](\.[0-9]{1,6})?)?(Z|[+-]([01][0-9]|2[0-3]):[0-5][0-9])?)?$"
)


@dataclass(frozen=True, slots=True)
class Subject:
    kind: Sql
    text: Sql
    num: Sql
    flag: Sql
    when: Sql
    json: Sql  # the value itself, for output (jsonb on PostgreSQL, JSON text on SQLite)
    elements: Sql  # `SELECT <element text> AS el FROM …`, for EXISTS


class Dialect(Protocol):
    name: str

    def subject(self, column: str, path: Sequence[str]) -> Subject: ...

    def instant(self, at: datetime) -> Sql: ...

    def column_instant(self, column: str) -> Sql: ...

    def days_between(self, later: Sql, earlier: Sql) -> Sql: ...

    def ids_in(self, column: str, ids: Sequence[int]) -> Sql: ...

    def json_number(self, expr: Sql) -> Sql: ...

    def json_text(self, expr: Sql) -> Sql: ...


class Postgres:
    name = "postgresql"

    def subject(self, column: str, path: Sequence[str]) -> Subject:
        j = fmt(f"({column} #> {{p}})", p=value(list(path))) if path else Sql(column)
        kind = fmt("jsonb_typeof({j})", j=j)
        text = fmt("({j} #>> '{}')", j=j)  # '{}': the JSON path of the whole value
        return Subject(
            kind=kind,
            text=fmt("CASE WHEN {k} = 'string' THEN {t} END", k=kind, t=text),
            num=fmt(
                "CASE WHEN {k} = 'number' THEN {t}::numeric "
                "WHEN {k} = 'string' AND {t} ~ {re} THEN btrim({t})::numeric END",
                k=kind,
                t=text,
                re=value(NUMERIC_RE),
            ),
            flag=fmt(
                "CASE WHEN {k} = 'boolean' THEN {t}::boolean WHEN {k} = 'string' AND lower({t}) IN ('true', 'false') "
                "THEN lower({t}) = 'true' END",
                k=kind,
                t=text,
            ),
            when=fmt(
                "CASE WHEN {k} = 'string' AND {t} ~ {re} THEN cdp_try_timestamptz({t}) END",
                k=kind,
                t=text,
                re=value(ISO_RE),
            ),
            json=j,
            elements=fmt(
                "SELECT el FROM jsonb_array_elements_text(CASE WHEN {k} = 'array' THEN {j} END) AS el", k=kind, j=j
            ),
        )

    def instant(self, at: datetime) -> Sql:
        return fmt("{v}::timestamptz", v=value(at))

    def column_instant(self, column: str) -> Sql:
        return Sql(column)

    def days_between(self, later: Sql, earlier: Sql) -> Sql:
        return fmt("(extract(epoch FROM ({a} - {b})) / 86400.0)", a=later, b=earlier)

    def ids_in(self, column: str, ids: Sequence[int]) -> Sql:
        return fmt(f"{column} = ANY({{ids}}::bigint[])", ids=value(list(ids)))

    def json_number(self, expr: Sql) -> Sql:
        return fmt("to_jsonb({e})", e=expr)

    def json_text(self, expr: Sql) -> Sql:
        return fmt("to_jsonb({e})", e=expr)


def _json_path(path: Sequence[str]) -> str:
    """SQLite's JSON path for keys (each quoted, so dots and spaces in a key are the key's)."""
    return "$" + "".join('."' + key.replace("\\", "\\\\").replace('"', '\\"') + '"' for key in path)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class Sqlite:
    name = "sqlite"

    def subject(self, column: str, path: Sequence[str]) -> Subject:
        p = value(_json_path(path))
        raw_kind = fmt(f"json_type({column}, {{p}})", p=p)
        kind = fmt(
            "CASE {k} WHEN 'integer' THEN 'number' WHEN 'real' THEN 'number' WHEN 'text' THEN 'string' "
            "WHEN 'true' THEN 'boolean' WHEN 'false' THEN 'boolean' ELSE {k} END",
            k=raw_kind,
        )
        raw = fmt(f"json_extract({column}, {{p}})", p=p)
        text = fmt("CASE WHEN {k} = 'text' THEN {r} END", k=raw_kind, r=raw)
        return Subject(
            kind=kind,
            text=text,
            num=fmt(
                "CASE WHEN {k} IN ('integer', 'real') THEN {r} WHEN {k} = 'text' AND {r} REGEXP {re} "
                "THEN CAST(trim({r}) AS REAL) END",
                k=raw_kind,
                r=raw,
                re=value(NUMERIC_RE),
            ),
            flag=fmt(
                "CASE {k} WHEN 'true' THEN 1 WHEN 'false' THEN 0 WHEN 'text' THEN "
                "CASE lower({r}) WHEN 'true' THEN 1 WHEN 'false' THEN 0 END END",
                k=raw_kind,
                r=raw,
            ),
            # julianday() takes 2026-02-31 as 2 March: a date that round-trips is real.
            when=fmt(
                "CASE WHEN {k} = 'text' AND {r} REGEXP {re} "
                "AND date(julianday(substr({r}, 1, 10))) = substr({r}, 1, 10) THEN julianday({r}) END",
                k=raw_kind,
                r=raw,
                re=value(ISO_RE),
            ),
            json=fmt(
                "CASE {k} WHEN 'text' THEN json_quote({r}) WHEN 'integer' THEN json_quote({r}) "
                "WHEN 'real' THEN json_quote({r}) WHEN 'true' THEN 'true' WHEN 'false' THEN 'false' "
                "WHEN 'null' THEN 'null' ELSE {r} END",
                k=raw_kind,
                r=raw,
            ),
            elements=fmt(
                f"SELECT CAST(value AS TEXT) AS el FROM json_each({column}, {{p}}) WHERE {{k}} = 'array'",
                p=p,
                k=raw_kind,
            ),
        )

    def instant(self, at: datetime) -> Sql:
        return value(2440587.5 + (at - _EPOCH).total_seconds() / 86400.0)  # a Julian day, as julianday() gives

    def column_instant(self, column: str) -> Sql:
        return Sql(f"julianday({column})")

    def days_between(self, later: Sql, earlier: Sql) -> Sql:
        return fmt("({a} - {b})", a=later, b=earlier)

    def ids_in(self, column: str, ids: Sequence[int]) -> Sql:
        listed = "[" + ",".join(str(int(i)) for i in ids) + "]"
        return fmt(f"{column} IN (SELECT value FROM json_each({{ids}}))", ids=value(listed))

    def json_number(self, expr: Sql) -> Sql:
        return fmt("json_quote({e})", e=expr)

    def json_text(self, expr: Sql) -> Sql:
        return fmt("json_quote({e})", e=expr)


POSTGRES = Postgres()
SQLITE = Sqlite()


def dialect_named(vendor: str) -> Dialect:
    return POSTGRES if vendor == "postgresql" else SQLITE
