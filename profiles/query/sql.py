"""SQL fragments with their parameters, composed without string formatting of values: every
value is a `%s` parameter, in order. Pure."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Sql:
    text: str
    params: tuple[Any, ...] = ()

    def __add__(self, other: Sql | str) -> Sql:
        other = other if isinstance(other, Sql) else Sql(other)
        return Sql(self.text + other.text, self.params + other.params)

    def __radd__(self, other: str) -> Sql:
        return Sql(other + self.text, self.params)

    def wrap(self) -> Sql:
        return Sql(f"({self.text})", self.params)


def value(v: Any) -> Sql:
    """One parameter."""
    return Sql("%s", (v,))


def join(parts: Iterable[Sql | str], sep: str) -> Sql:
    text: list[str] = []
    params: list[Any] = []
    for part in parts:
        part = part if isinstance(part, Sql) else Sql(part)
        text.append(part.text)
        params += part.params
    return Sql(sep.join(text), tuple(params))


_SLOT = re.compile(r"\{(\w+)\}")


def fmt(template: str, **parts: Sql | str) -> Sql:
    """`template` with each `{name}` replaced by that fragment (its parameters in the order
    the slots appear). A literal `%` in `template` must be written `%%`."""
    out: list[str] = []
    params: list[Any] = []
    last = 0
    for match in _SLOT.finditer(template):
        out.append(template[last : match.start()])
        part = parts[match.group(1)]
        part = part if isinstance(part, Sql) else Sql(part)
        out.append(part.text)
        params += part.params
        last = match.end()
    out.append(template[last:])
    return Sql("".join(out), tuple(params))
