"""Traits as Mailjet contact properties (pure): flattened exactly one level with `_`
(`location.latitude` becomes `location_latitude`), deeper nesting dropped and said so, as
Mailjet's Segment destination does (esp-contracts §3)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

# Mailjet's property names: letters, digits and underscores (what its UI takes).
_NAME_OK = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_")


@dataclass(frozen=True, slots=True)
class Flat:
    properties: dict[str, Any]
    dropped: list[str] = field(default_factory=list)  # dotted paths not sent, with why


def _scalar(value: Any) -> bool:
    return value is None or isinstance(value, bool | int | float | str)


def _name(raw: str) -> str:
    return "".join(c if c in _NAME_OK else "_" for c in raw)


def flatten_traits(traits: Mapping[str, Any]) -> Flat:
    """`{"plan": "pro", "location": {"latitude": 48.8}}` → properties `plan` and
    `location_latitude`. A value nested two levels or more, or a list, is dropped and listed
    in `dropped` (`address.geo.lat: nested too deep`)."""
    out: dict[str, Any] = {}
    dropped: list[str] = []
    for key, value in traits.items():
        if _scalar(value):
            out[_name(key)] = value
        elif isinstance(value, Mapping):
            for sub, inner in value.items():
                if _scalar(inner):
                    out[_name(f"{key}_{sub}")] = inner
                else:
                    dropped.append(f"{key}.{sub}: nested too deep")
        else:
            dropped.append(f"{key}: a list is no contact property")
    return Flat(out, dropped)


def datatype(value: Any) -> str | None:
    """The Mailjet `Datatype` a property of this value is created with; None for null
    (its type is not known yet: created when a value comes)."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "str"
    return None
