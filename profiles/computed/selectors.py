"""Reads of computed traits: a profile's values, a definition's distribution (stored, or
previewed before it is saved), and what the admin's pickers offer (event names seen,
properties seen on an event)."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db.models import FilteredRelation, Q
from django.utils import timezone

from profiles.computed.compute import ReadTooSlow, values_read
from profiles.computed.definitions import TraitDefinition, definition_parse
from profiles.computed.models import ComputedTrait, ComputedTraitValue, EventName
from profiles.models import Event
from profiles.query.events import CALL_NAMES
from profiles.query.filters import QueryError


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
class ProfileComputedTrait:
    """An enabled definition and this profile's value of it (`has_value` False: none)."""

    trait_id: int
    key: str
    name: str
    definition: TraitDefinition | None  # None: a stored definition that no longer parses
    status: str
    last_computed_at: datetime | None
    has_value: bool
    value: Any
    computed_at: datetime | None


def profile_computed_traits(*, profile_id: int) -> list[ProfileComputedTrait]:
    """Every enabled computed trait, each with the profile's value if it has one, by name
    (one query: the definitions joined with this profile's values)."""
    rows = (
        ComputedTrait.objects.filter(enabled=True)
        .annotate(mine=FilteredRelation("values", condition=Q(values__profile_id=profile_id)))
        .order_by("name", "key")
        .values_list("id", "key", "name", "type", "spec", "status", "last_computed_at", "mine__id", "mine__value",
                     "mine__computed_at")
    )  # fmt: skip
    out = []
    for pk, key, name, kind, spec, status, last, value_id, value, at in rows:
        try:
            defn: TraitDefinition | None = definition_parse({"key": key, **spec, "type": kind})
        except QueryError:
            defn = None
        out.append(ProfileComputedTrait(pk, key, name, defn, status, last, value_id is not None, value, at))
    return out


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


# A preview runs a definition's query over everyone on a web request: it is stopped past
# this, below the edge's 10 s statement timeout, so the page says so instead of a 503.
PREVIEW_TIMEOUT_S = 8.0


class PreviewTooSlow(Exception):
    """The preview took longer than `PREVIEW_TIMEOUT_S`."""


@dataclass(frozen=True, slots=True)
class Preview:
    distribution: Distribution
    duration_ms: int
    # Numbers that take few distinct values (counts, most scores) read better one by one than
    # as a histogram: (value, profiles), smallest first, when there are at most `buckets`.
    numbers: list[tuple[float, int]]


def definition_preview(
    *, defn: TraitDefinition, now: datetime | None = None, top: int = 10, buckets: int = 10
) -> Preview:
    """The distribution `defn` would have if it were computed now, over current events, by
    the query a full recompute runs; nothing is written (`compute.values_read`). It is
    what `trait_distribution` shows once the definition is saved and computed. Raises
    `PreviewTooSlow`."""
    started = time.monotonic()
    try:
        total, values = values_read(defn=defn, now=now or timezone.now(), keep=DISTRIBUTION_SAMPLE,
                                    timeout_s=PREVIEW_TIMEOUT_S)  # fmt: skip
    except ReadTooSlow:
        raise PreviewTooSlow(f"The preview was stopped after {PREVIEW_TIMEOUT_S:g} s.") from None
    distribution = values_distribution(values, total=total, top=top, buckets=buckets)
    numbers = sorted(Counter(values).items()) if distribution.kind == "numbers" else []
    return Preview(distribution, int((time.monotonic() - started) * 1000), numbers if len(numbers) <= buckets else [])


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
    # Ties in value order: the same values give the same picture whatever order they were read in.
    return Distribution(total, "values", sorted(tally.items(), key=lambda kv: (-kv[1], kv[0]))[:top], [])


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
