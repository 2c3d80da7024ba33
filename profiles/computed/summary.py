"""A definition in a few words, for people: the profile page and the admin's list say
"count of Order Completed where revenue > 0, last 90 days" rather than show its JSON. Pure."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from profiles.computed.definitions import TraitDefinition
from profiles.query.filters import Filter

TYPE_LABELS = {
    "counter": "Counter", "sum": "Sum", "avg": "Average", "min": "Minimum", "max": "Maximum",
    "most_frequent": "Most frequent", "first": "First", "last": "Last", "unique_list": "Unique list",
    "unique_count": "Unique count", "score": "Score",
}  # fmt: skip
# How each operator reads in a sentence ("revenue > 0", "plan is one of pro, team").
OP_WORDS = {
    "=": "=", "!=": "≠", "<": "<", "<=": "≤", ">": ">", ">=": "≥", "one_of": "is one of", "none_of": "is none of",
    "contains": "contains", "not_contains": "does not contain", "starts_with": "starts with",
    "ends_with": "ends with", "exists": "exists", "not_exists": "does not exist", "before_date": "is before",
    "after_date": "is after", "within_last_days": "is within the last", "before_last_days": "is before the last",
}  # fmt: skip
_OF = {
    "sum": "sum of {p}", "avg": "average {p}", "min": "lowest {p}", "max": "highest {p}",
    "most_frequent": "most frequent {p}", "first": "first {p}", "last": "latest {p}",
    "unique_list": "distinct values of {p}", "unique_count": "number of distinct {p}",
}  # fmt: skip


def _scalar(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v) if not isinstance(v, str) else f"“{v}”"


def _number(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else f"{v:g}"


def filter_summary(f: Filter) -> str:
    """`revenue > 0`, `url contains “pricing”`, `plan is one of “pro”, “team”`."""
    subject = ".".join(f.path)
    words = OP_WORDS.get(f.op, f.op)
    if f.op in ("exists", "not_exists"):
        return f"{subject} {words}"
    if f.op in ("within_last_days", "before_last_days"):
        return f"{subject} {words} {_number(f.value)} days"
    if isinstance(f.value, list | tuple):
        return f"{subject} {words} {', '.join(_scalar(v) for v in f.value)}"
    return f"{subject} {words} {_scalar(f.value)}"


def _where(filters: Sequence[Filter]) -> str:
    return f" where {' and '.join(filter_summary(f) for f in filters)}" if filters else ""


def _window(d: TraitDefinition) -> str:
    if d.window_days is None:
        return ", all time"
    return ", last day" if d.window_days == 1 else f", last {d.window_days} days"


def definition_summary(d: TraitDefinition) -> str:
    """E.g. "count of Order Completed, last 90 days"; for a score "+1 per Email Opened; +3
    per Email Link Clicked; half-life 30 days, all time"."""
    if d.type == "score":
        rules = "; ".join(
            f"{'+' if r.points >= 0 else '-'}{_number(abs(r.points))} per {r.event}{_where(r.where)}" for r in d.rules
        )
        decay = f"; half-life {_number(d.half_life_days)} days" if d.half_life_days is not None else ""
        return f"{rules}{decay}{_window(d)}"
    if d.type == "counter":
        return f"count of {d.event}{_where(d.where)}{_window(d)}"
    prop = ".".join(d.prop or ())
    head = _OF[d.type].format(p=prop)
    tail = f" (seen at least {d.min_frequency} times)" if d.type == "most_frequent" else ""
    return f"{head} on {d.event}{_where(d.where)}{tail}{_window(d)}"
