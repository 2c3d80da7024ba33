"""Reads of computed traits: a profile's values, a definition's distribution, and what the
admin's pickers offer (event names seen, properties seen on an event)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from profiles.computed.compiler import CALL_NAMES
from profiles.computed.models import ComputedTraitValue, EventName
from profiles.models import Event


@dataclass(frozen=True, slots=True)
class ComputedValue:
    key: str
    value: Any
    computed_at: datetime
    name: str


def profile_computed_values(*, profile_id: int) -> dict[str, ComputedValue]:
    """A profile's computed trait values by key (one query)."""
    rows = ComputedTraitValue.objects.filter(profile_id=profile_id, trait__enabled=True).values_list(
        "trait__key", "value", "computed_at", "trait__name"
    )
    return {key: ComputedValue(key, value, at, name) for key, value, at, name in rows}


@dataclass(frozen=True, slots=True)
class Distribution:
    profiles: int
    kind: str  # "numbers": a histogram; "values": the top values
    top: list[tuple[Any, int]]  # (value, profiles), most common first
    histogram: list[tuple[float, float, int]]  # (from, to, profiles)
    minimum: float | None = None
    maximum: float | None = None


# Values read to describe a distribution: the whole population up to this many profiles,
# else a sample of them (it is a picture, not an accounting).
DISTRIBUTION_SAMPLE = 200_000


def trait_distribution(*, trait_id: int, top: int = 10, buckets: int = 10) -> Distribution:
    """How a trait's values are spread: a histogram for numbers, else the top values."""
    qs = ComputedTraitValue.objects.filter(trait_id=trait_id)
    total = qs.count()
    values = list(qs.values_list("value", flat=True)[:DISTRIBUTION_SAMPLE])
    return values_distribution(values, total=total, top=top, buckets=buckets)


def values_distribution(values: list[Any], *, total: int, top: int = 10, buckets: int = 10) -> Distribution:
    numbers = [float(v) for v in values if isinstance(v, int | float) and not isinstance(v, bool)]
    if values and len(numbers) == len(values):
        lo, hi = min(numbers), max(numbers)
        width = (hi - lo) / buckets or 1.0
        counts = Counter(min(int((n - lo) / width), buckets - 1) for n in numbers)
        histogram = [(lo + i * width, lo + (i + 1) * width, counts.get(i, 0)) for i in range(buckets if hi > lo else 1)]
        return Distribution(total, "numbers", [], histogram, lo, hi)
    tally: Counter[str] = Counter()
    for v in values:
        for item in v if isinstance(v, list) else [v]:
            tally[item if isinstance(item, str) else str(item)] += 1
    return Distribution(total, "values", tally.most_common(top), [])


def event_names(*, limit: int = 500) -> list[tuple[str, int]]:
    """The event names seen, most frequent first, with how many events each."""
    return list(EventName.objects.order_by("-count", "name").values_list("name", "count")[:limit])


# Events read to list the properties seen on an event: the newest ones (an index range).
PROPERTY_SAMPLE = 500


def event_properties(*, event: str, sample: int = PROPERTY_SAMPLE) -> list[tuple[str, int, list[str]]]:
    """The properties seen on the newest `sample` events of a name, as dotted paths (one
    level of nesting), each with how often it appears and a few example values."""
    call = CALL_NAMES.get(event)
    events = Event.objects.filter(type=call) if call else Event.objects.filter(event=event)
    seen: Counter[str] = Counter()
    examples: dict[str, list[str]] = {}
    for props in events.order_by("-timestamp").values_list("properties", flat=True)[:sample]:
        for key, val in (props or {}).items():
            pairs = [(f"{key}.{k}", v) for k, v in val.items()] if isinstance(val, dict) else [(key, val)]
            for path, v in pairs:
                seen[path] += 1
                shown = examples.setdefault(path, [])
                text = v if isinstance(v, str) else str(v).lower() if isinstance(v, bool) else str(v)
                if len(shown) < 8 and text not in shown and len(text) <= 80:
                    shown.append(text)
    return [(path, n, examples[path]) for path, n in seen.most_common()]
