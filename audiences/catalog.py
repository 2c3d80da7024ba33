"""What the audience builder offers to pick from: the events seen with their volumes, the
properties seen on an event with their types and common values, the traits (computed, and the
custom and SQL traits seen on profiles) and the other audiences. Reads only, each bounded: a
sample of the newest rows through an index, never a scan of the event log."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from audiences.models import Audience
from profiles.computed.selectors import event_names
from profiles.models import ComputedTrait, Event, Profile
from profiles.query.events import CALL_NAMES
from profiles.query.filters import parse_date

# Rows read to describe properties or traits: the newest events of a name (the `event_name_time`
# index), or the most recently seen profiles (`profile_last_seen`). A few milliseconds each.
SAMPLE = 500
EXAMPLES = 8
# Computed trait types whose values are numbers; `unique_list` is a list, the rest text.
_NUMERIC_TYPES = ("counter", "sum", "avg", "min", "max", "unique_count", "score")


@dataclass(frozen=True, slots=True)
class Seen:
    """A property (dotted path) or trait key, how often it appeared in the sample, the type
    of its values (number, boolean, date, list or text) and its most common values."""

    path: str
    count: int
    type: str
    examples: list[Any]


def value_type(v: Any) -> str | None:
    """The builder's type of a JSON value; None for null and objects (not offered)."""
    if isinstance(v, bool):
        return "boolean"
    if isinstance(v, int | float):
        return "number"
    if isinstance(v, list):
        return "list"
    if isinstance(v, str):
        return "date" if parse_date(v) is not None else "text"
    return None


def describe(documents: Iterable[Any], *, nested: bool) -> list[Seen]:
    """Pure. The keys of JSON objects (one level of nesting as dotted paths, if `nested`),
    most frequent first, each with its commonest type and values."""
    seen: Counter[str] = Counter()
    types: dict[str, Counter[str]] = {}
    values: dict[str, Counter[Any]] = {}
    for doc in documents:
        for key, val in (doc or {}).items() if isinstance(doc, dict) else ():
            pairs = [(f"{key}.{k}", v) for k, v in val.items()] if nested and isinstance(val, dict) else [(key, val)]
            for path, v in pairs:
                kind = value_type(v)
                if kind is None:
                    continue
                seen[path] += 1
                types.setdefault(path, Counter())[kind] += 1
                items = v if isinstance(v, list) else [v]
                for item in items:
                    if isinstance(item, bool | int | float) or (isinstance(item, str) and len(item) <= 80):
                        values.setdefault(path, Counter())[item] += 1
    out = []
    for path, n in seen.most_common():
        common = [v for v, _ in values.get(path, Counter()).most_common(EXAMPLES)]
        out.append(Seen(path, n, types[path].most_common(1)[0][0], common))
    return out


def event_catalog(*, limit: int = 500) -> list[tuple[str, int]]:
    """The event names seen, most frequent first, with how many events each (kept current
    by the change feed, `EventName`)."""
    return event_names(limit=limit)


def event_property_catalog(*, event: str, sample: int = SAMPLE) -> list[Seen]:
    """The properties seen on the newest `sample` events of a name."""
    call = CALL_NAMES.get(event)
    if call:  # page and screen calls have no event name: the newest by id (the primary key)
        rows = Event.objects.filter(type=call).order_by("-id")
    else:
        rows = Event.objects.filter(event=event).order_by("-timestamp")
    return describe(rows.values_list("properties", flat=True)[:sample], nested=True)


@dataclass(frozen=True, slots=True)
class TraitSeen:
    key: str
    label: str
    kind: str  # "computed" or "custom" (identify's traits, SQL traits)
    type: str
    examples: list[Any]


def trait_catalog(*, sample: int = SAMPLE) -> list[TraitSeen]:
    """Computed traits (every definition), then the custom traits seen on the most recently
    seen profiles (SQL traits arrive as custom traits)."""
    out = []
    computed = list(ComputedTrait.objects.order_by("key").values_list("key", "name", "type"))
    for key, name, kind in computed:
        shape = "number" if kind in _NUMERIC_TYPES else "list" if kind == "unique_list" else "text"
        out.append(TraitSeen(key, name or key, "computed", shape, []))
    taken = {key for key, _, _ in computed}
    recent = Profile.objects.filter(merged_into__isnull=True, last_seen_at__isnull=False).order_by("-last_seen_at")
    for s in describe(recent.values_list("traits", flat=True)[:sample], nested=False):
        if s.path not in taken:
            out.append(TraitSeen(s.path, s.path, "custom", s.type, s.examples))
    return out


def audience_catalog(*, exclude: str | None = None) -> list[tuple[str, str, int]]:
    """(key, name, size) of every audience but `exclude` (the one being edited)."""
    rows = Audience.objects.order_by("name", "key").values_list("key", "name", "size")
    return [row for row in rows if row[0] != exclude]
