"""What a SQL trait's result becomes: the columns checked, each row read or skipped with its
reason, and the identify calls to send. Pure: no database, no clock.

Segment's limits: a column naming the person (`user_id`, `email` or `anonymous_id`; never
`user_id` and `anonymous_id` together) and 1 to 25 trait columns, of distinct names; no null or
duplicate identifiers; values that are strings or numbers (booleans too, here: PostgreSQL's
boolean columns); each row under 16 KB. A result with the wrong columns fails the run
(`ResultError`); a row that breaks a limit is skipped, and the run's report counts it by reason.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import math
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import orjson

from profiles.identity.extract import MAX_IDENTIFIER_CHARS

MAX_TRAIT_COLUMNS = 25
MAX_ROW_BYTES = 16 * 1024
EXAMPLES_PER_REASON = 5
# Integers past this come back from JSON as other numbers (the event log stores JSON).
EXACT_INTEGER = 2**53
IDENTIFIER_COLUMNS = ("user_id", "email", "anonymous_id")

REASONS = {
    "null_identifier": "The identifier is null or empty.",
    "identifier_type": "The identifier is not a string or a whole number.",
    "identifier_too_long": f"The identifier is over {MAX_IDENTIFIER_CHARS} characters (identity resolution would "
    "ignore it).",
    "duplicate_identifier": "Several rows name the same person: all of them are skipped (the person's traits stay "
    "as they were).",
    "unsupported_type": "A value is not a string, a number or a boolean: cast dates and times to text "
    "(e.g. `created_at::text`), arrays to comma-separated strings.",
    "number_out_of_range": "A number is not finite, or is an integer too large to keep exactly (2^53 or more): cast "
    "it to text.",
    "invalid_characters": "A string holds a NUL character.",
    "row_too_large": f"The row is over {MAX_ROW_BYTES // 1024} KB as JSON.",
    "refused_by_ingest": "The identify call was refused by ingest (the example says why).",
}


class ResultError(Exception):
    """The result cannot be used at all (wrong columns): the run fails, nothing is sent."""


class Skip(Exception):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True, slots=True)
class Columns:
    identifier: int  # the identifier's position in a row
    traits: tuple[tuple[int, str], ...]  # (position, trait key) of the others


def columns_check(columns: Sequence[str], identifier: str) -> Columns:
    """Where the identifier and the traits are. Raises `ResultError` saying what is wrong."""
    names = [str(c) for c in columns]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ResultError(f"The result has several columns named {', '.join(map(repr, duplicates))}.")
    lowered = [n.lower() for n in names]
    if identifier not in lowered:
        raise ResultError(f"The result has no {identifier!r} column: the column that names the person (this trait's "
                          f"identifier). Its columns: {', '.join(names[:30]) or 'none'}.")  # fmt: skip
    others = [n for n in ("user_id", "anonymous_id") if n != identifier and n in lowered]
    if others:
        raise ResultError(f"The result has a {others[0]!r} column besides {identifier!r}: name the person by one "
                          "identifier column (Segment's rule: never both user_id and anonymous_id).")  # fmt: skip
    at = lowered.index(identifier)
    traits = tuple((i, n) for i, n in enumerate(names) if i != at)
    if not traits:
        raise ResultError("The result has no trait column: add at least one column beside the identifier.")
    if len(traits) > MAX_TRAIT_COLUMNS:
        raise ResultError(f"The result has {len(traits)} trait columns; at most {MAX_TRAIT_COLUMNS}.")
    return Columns(at, traits)


# --- Rows -----------------------------------------------------------------------------------------

_TYPE_NAMES = {
    dt.datetime: "a timestamp", dt.date: "a date", dt.time: "a time", dt.timedelta: "an interval",
    bytes: "binary", memoryview: "binary", bytearray: "binary", list: "an array", tuple: "an array", dict: "JSON",
}  # fmt: skip


def _identifier(value: Any, kind: str) -> str:
    if value is None or value == "":
        raise Skip("null_identifier", "null")
    if isinstance(value, uuid.UUID) or (isinstance(value, int) and not isinstance(value, bool)):
        value = str(value)
    elif isinstance(value, float | Decimal) and math.isfinite(value) and value == int(value):
        value = str(int(value))
    elif not isinstance(value, str):
        raise Skip("identifier_type", f"{kind}: {_TYPE_NAMES.get(type(value), type(value).__name__)}")
    if kind == "email":
        value = value.strip().lower()  # as identity resolution keeps it
    if not value.strip():
        raise Skip("null_identifier", f"{kind}: {value!r}")
    if len(value) > MAX_IDENTIFIER_CHARS:
        raise Skip("identifier_too_long", f"{kind}: {value[:40]!r}…")
    if "\x00" in value:
        raise Skip("invalid_characters", kind)
    return value


def trait_value(value: Any, column: str) -> Any:
    """A value as a trait (JSON), or `Skip`."""
    if value is None or isinstance(value, bool | str):
        if isinstance(value, str) and "\x00" in value:
            raise Skip("invalid_characters", column)
        return value
    if isinstance(value, int):
        if abs(value) >= EXACT_INTEGER:
            raise Skip("number_out_of_range", f"{column}: {value}")
        return value
    if isinstance(value, float | Decimal):
        if not math.isfinite(value):
            raise Skip("number_out_of_range", f"{column}: {value}")
        if isinstance(value, Decimal) and value == value.to_integral_value():
            return trait_value(int(value), column)
        return float(value)
    if isinstance(value, uuid.UUID):
        return str(value)
    raise Skip("unsupported_type", f"{column}: {_TYPE_NAMES.get(type(value), type(value).__name__)}")


@dataclass(slots=True)
class Report:
    """Skipped rows: how many per reason, and the first few examples of each."""

    skipped: dict[str, int] = field(default_factory=dict)
    examples: dict[str, list[str]] = field(default_factory=dict)

    def skip(self, reason: str, example: str, count: int = 1) -> None:
        self.skipped[reason] = self.skipped.get(reason, 0) + count
        shown = self.examples.setdefault(reason, [])
        if len(shown) < EXAMPLES_PER_REASON:
            shown.append(example[:200])

    @property
    def total(self) -> int:
        return sum(self.skipped.values())

    def as_json(self) -> dict[str, Any]:
        return {
            reason: {"count": n, "message": REASONS.get(reason, reason), "examples": self.examples.get(reason, [])}
            for reason, n in sorted(self.skipped.items())
        }


@dataclass(slots=True)
class Rows:
    """The rows read: traits by identifier, and every identifier the result names (also in
    rows skipped for a bad value: those people keep their traits; they are not missing)."""

    traits: dict[str, dict[str, Any]] = field(default_factory=dict)
    present: set[str] = field(default_factory=set)
    report: Report = field(default_factory=Report)
    count: int = 0


def rows_read(
    rows: Iterable[Sequence[Any]], columns: Columns, identifier: str, *, report: Report | None = None
) -> Rows:
    """Read every row (an iterable, so it may be fetched in chunks), skipping what breaks a
    limit (counted in `report`); a duplicated identifier skips all of its rows."""
    out = Rows(report=report if report is not None else Report())
    duplicated: dict[str, int] = {}
    for row in rows:
        out.count += 1
        try:
            who = _identifier(row[columns.identifier], identifier)
        except Skip as skip:
            out.report.skip(skip.reason, f"row {out.count}: {skip.detail}")
            continue
        if who in out.present:  # the first row too, unless it was skipped already (and counted)
            duplicated[who] = duplicated.get(who, 0) + (2 if out.traits.pop(who, None) is not None else 1)
            continue
        out.present.add(who)
        try:
            traits = {key: trait_value(row[i], key) for i, key in columns.traits}
            size = len(orjson.dumps({identifier: who, **traits}))
            if size > MAX_ROW_BYTES:
                raise Skip("row_too_large", f"{size:,} bytes")
        except Skip as skip:
            out.report.skip(skip.reason, f"{identifier} {who!r}: {skip.detail}")
            continue
        out.traits[who] = traits
    for who, n in duplicated.items():
        out.report.skip("duplicate_identifier", f"{identifier} {who!r}: {n} rows", count=n)
    return out


# --- What to send -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Send:
    """One identify call: `traits` are the row's (with null for a key it no longer has);
    `state` is what is remembered for the person after it (None: forget them)."""

    identifier: str
    traits: dict[str, Any]
    changed: int  # values that differ from the last run's
    state: dict[str, Any] | None


def _same(a: Any, b: Any) -> bool:
    return orjson.dumps(a) == orjson.dumps(b)  # 1 and 1.0, 1 and true differ


def changes_plan(rows: Rows, previous: Mapping[str, Mapping[str, Any]]) -> tuple[list[Send], list[str]]:
    """The identify calls to send: a person whose values changed since the last run gets
    all of the row's traits (and null for a column the query no longer has); a person the
    last run saw and this one does not gets every one of those traits as null. Returns the
    calls, and the people to forget without a call (no value left to null)."""
    sends: list[Send] = []
    for who, new in rows.traits.items():
        old = previous.get(who) or {}
        traits = {**{k: None for k in old if k not in new}, **new}
        changed = sum(1 for k, v in traits.items() if k not in old or not _same(old[k], v))
        if changed:
            sends.append(Send(who, traits, changed, new))
    forget: list[str] = []
    for who, old in previous.items():
        if who in rows.present:
            continue
        nulled = {k: None for k in old}
        changed = sum(1 for v in old.values() if v is not None)
        if changed:
            sends.append(Send(who, nulled, changed, None))
        else:
            forget.append(who)
    return sends, forget


def identify_message(*, send: Send, identifier: str, key: str, run_id: int, timestamp: dt.datetime) -> dict[str, Any]:
    """The identify call for one person. Its messageId is fixed per run and person, so a
    chunk sent again (a retried task) is dropped by ingest as a duplicate."""
    digest = hashlib.sha256(send.identifier.encode()).hexdigest()[:40]
    message: dict[str, Any] = {
        "type": "identify",
        "messageId": f"sql-{run_id}-{digest}",
        "timestamp": timestamp.isoformat(),
        "traits": dict(send.traits),
        "context": {"sqlTrait": {"key": key, "run": run_id}},
    }
    if identifier == "user_id":
        message["userId"] = send.identifier
    elif identifier == "anonymous_id":
        message["anonymousId"] = send.identifier
    else:
        message["traits"] = {"email": send.identifier, **message["traits"]}
    return message
