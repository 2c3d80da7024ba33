"""A rule in words, for people: an indented outline of a rule tree, and a readable diff of two
versions as lines added and removed. Pure: JSON in, text out.

    All of
      Email Opened where machine_open is not true, in the last 180 days
      None of
        Order Completed, in the last 180 days

The builder's labels say the same things (`audiences/static/audiences/builder.js`).
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

OPERATOR_WORDS = {
    "=": "is", "!=": "is not", "<": "<", "<=": "≤", ">": ">", ">=": "≥", "one_of": "is one of",
    "none_of": "is none of", "contains": "contains", "not_contains": "does not contain",
    "starts_with": "starts with", "ends_with": "ends with", "exists": "exists", "not_exists": "does not exist",
    "before_date": "is before", "after_date": "is after", "within_last_days": "is within the last",
    "before_last_days": "is more than",
}  # fmt: skip
COUNT_WORDS = {">=": "at least", "=": "exactly", "<=": "at most"}
_INDENT = "  "


def _value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    if isinstance(v, list | tuple):
        return ", ".join(_value(x) for x in v)
    if isinstance(v, str):
        return f'"{v}"'
    return str(v)


def _days(n: Any) -> str:
    text = _value(n)
    return f"{text} day" if text == "1" else f"{text} days"


def filter_text(f: Mapping[str, Any], *, key: str = "property") -> str:
    """`machine_open is not true`, `plan is one of "pro", "team"`, `signed_up is within the last 7 days`."""
    name, op = str(f.get(key, "?")), str(f.get("op", "?"))
    words = OPERATOR_WORDS.get(op, op)
    if op in ("exists", "not_exists"):
        return f"{name} {words}"
    if op == "within_last_days":
        return f"{name} {words} {_days(f.get('value'))}"
    if op == "before_last_days":
        return f"{name} {words} {_days(f.get('value'))} ago"
    return f"{name} {words} {_value(f.get('value'))}"


def _where(filters: Sequence[Mapping[str, Any]] | None) -> str:
    return " where " + " and ".join(filter_text(f) for f in filters) if filters else ""


def event_text(node: Mapping[str, Any]) -> str:
    """`Email Opened where machine_open is not true, at least 2 times, in the last 180 days,
    and then no Order Completed within 24 hours`."""
    parts = [f"{node.get('event')}{_where(node.get('where'))}"]
    count = node.get("count")
    if isinstance(count, Mapping) and (count.get("op"), count.get("value")) != (">=", 1):
        n = count.get("value")
        words = COUNT_WORDS.get(str(count.get("op")), count.get("op"))
        parts.append(f"{words} {_value(n)} time{'' if n == 1 else 's'}")
    window = node.get("window")
    if isinstance(window, Mapping) and "within_days" in window:
        parts.append(f"in the last {_days(window['within_days'])}")
    elif isinstance(window, Mapping) and "between_days" in window:
        a, b = window["between_days"]
        parts.append(f"between {_value(a)} and {_days(b)} ago")
    for step in node.get("then") or ():
        did = "" if step.get("did", True) else "no "
        parts.append(f"and then {did}{step.get('event')}{_where(step.get('where'))} "
                     f"within {_value(step.get('within_hours'))} hours")  # fmt: skip
    return ", ".join(parts)


def condition_text(node: Mapping[str, Any]) -> str:
    if "event" in node:
        return event_text(node)
    if "trait" in node:
        return "trait " + filter_text(node, key="trait")
    if "audience" in node:
        return f"{'in' if node.get('member', True) else 'not in'} audience {node.get('audience')}"
    return str(dict(node))


def rule_outline(rule: Any) -> list[str]:
    """The rule as indented lines, one per group or condition."""
    out: list[str] = []
    _outline(rule, 0, out)
    return out


def _outline(node: Any, depth: int, out: list[str]) -> None:
    pad = _INDENT * depth
    if not isinstance(node, Mapping):
        out.append(f"{pad}{node!r}")
        return
    for group, label in (("all", "All of"), ("any", "Any of")):
        if isinstance(node.get(group), list):
            out.append(pad + label)
            for child in node[group]:
                _outline(child, depth + 1, out)
            return
    if "not" in node:
        inner = node["not"]
        if isinstance(inner, Mapping) and isinstance(inner.get("any"), list):
            out.append(pad + "None of")
            for child in inner["any"]:
                _outline(child, depth + 1, out)
        elif isinstance(inner, Mapping) and isinstance(inner.get("all"), list):
            out.append(pad + "Not all of")
            for child in inner["all"]:
                _outline(child, depth + 1, out)
        elif isinstance(inner, Mapping) and "not" not in inner:
            out.append(f"{pad}Not: {condition_text(inner)}")
        else:
            out.append(pad + "Not")
            _outline(inner, depth + 1, out)
        return
    out.append(pad + condition_text(node))


@dataclass(frozen=True, slots=True)
class DiffLine:
    change: str  # "+" added, "-" removed, " " the same
    text: str


def rule_diff(before: Any, after: Any) -> list[DiffLine]:
    """What changed from one version's rule to the next, line by line of their outlines."""
    old, new = rule_outline(before) if before is not None else [], rule_outline(after)
    out: list[DiffLine] = []
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(a=old, b=new, autojunk=False).get_opcodes():
        if op == "equal":
            out += [DiffLine(" ", line) for line in old[i1:i2]]
            continue
        out += [DiffLine("-", line) for line in old[i1:i2]]
        out += [DiffLine("+", line) for line in new[j1:j2]]
    return out
