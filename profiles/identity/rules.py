"""Identity settings as frozen data, with Segment's defaults (segment-spec section 4)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from enum import StrEnum

IdKey = tuple[str, str]  # (kind, normalised value)


class Window(StrEnum):
    EVER = "ever"
    WEEKLY = "weekly"
    MONTHLY = "monthly"
    ANNUALLY = "annually"

    @property
    def span(self) -> timedelta | None:
        return _SPANS[self]


_SPANS = {
    Window.EVER: None,
    Window.WEEKLY: timedelta(days=7),
    Window.MONTHLY: timedelta(days=30),
    Window.ANNUALLY: timedelta(days=365),
}

# Segment's suggested block list: exact values (compared case-insensitively) and one regex,
# which catches "", "0", "000…" and the all-zero UUID.
DEFAULT_BLOCKED = ("null", "undefined", "anonymous", "-1", "0", "/^[0-]*$/")

# The 11 defaults Segment lists for users (group_id belongs to accounts, not people).
DEFAULT_KINDS: dict[str, tuple[int | None, int, Window]] = {
    # kind: (explicit priority, limit, window). Unranked kinds sort alphabetically after
    # the ranked ones, as in Segment, where user_id is 1, email 2, the rest from 3.
    "user_id": (1, 1, Window.EVER),
    "email": (2, 5, Window.ANNUALLY),
    "android.id": (None, 5, Window.ANNUALLY),
    "android.idfa": (None, 5, Window.ANNUALLY),
    "android.push_token": (None, 5, Window.ANNUALLY),
    "anonymous_id": (None, 5, Window.MONTHLY),
    "ga_client_id": (None, 5, Window.MONTHLY),
    "ios.id": (None, 5, Window.ANNUALLY),
    "ios.idfa": (None, 5, Window.ANNUALLY),
    "ios.push_token": (None, 5, Window.ANNUALLY),
}
DEFAULT_LIMIT = 5
DEFAULT_WINDOW = Window.ANNUALLY
MAX_MERGES = 100
MAX_IDENTITIES = 1000


@dataclass(frozen=True, slots=True)
class KindRule:
    kind: str
    rank: int  # 1 is the most trusted
    limit: int
    window: Window
    blocked_exact: frozenset[str] = frozenset()
    blocked_patterns: tuple[re.Pattern[str], ...] = ()

    def blocks(self, value: str) -> bool:
        return value.lower() in self.blocked_exact or any(p.search(value) for p in self.blocked_patterns)

    def describe(self) -> str:
        return f"{self.kind} limit {self.limit} {self.window.value}"


@dataclass(frozen=True, slots=True)
class CustomKind:
    """A custom identifier read from `traits` (and `context.traits`), `properties` or
    `context`, by key; the camelCase and snake_case spellings are both read."""

    kind: str
    location: str  # "traits" | "properties" | "context"
    key: str


@dataclass(frozen=True)
class IdentityRules:
    kinds: Mapping[str, KindRule]
    custom: tuple[CustomKind, ...] = ()
    max_merges: int = MAX_MERGES
    max_identities: int = MAX_IDENTITIES
    alias_merges: bool = True
    default_blocked: tuple[str, ...] = DEFAULT_BLOCKED
    _unknown: dict[str, KindRule] = field(default_factory=dict, compare=False, repr=False)

    def rule(self, kind: str) -> KindRule:
        """The rule of `kind`; a kind never configured gets the default limit, the default
        block list, and the lowest priority (as Segment auto-adds unseen types)."""
        found = self.kinds.get(kind)
        if found is not None:
            return found
        if kind not in self._unknown:
            exact, patterns = parse_blocked(self.default_blocked)
            self._unknown[kind] = KindRule(kind, 10_000, DEFAULT_LIMIT, DEFAULT_WINDOW, exact, patterns)
        return self._unknown[kind]

    def rank_key(self, key: IdKey) -> int:
        """Sort key, most trusted first. Sorts are stable, so identifiers of equal rank keep
        the message's order (userId before previousId, traits.email before properties.email)."""
        return self.rule(key[0]).rank


def parse_blocked(lines: tuple[str, ...] | list[str]) -> tuple[frozenset[str], tuple[re.Pattern[str], ...]]:
    """`/regex/` lines are regular expressions; other lines are exact values."""
    exact: set[str] = set()
    patterns: list[re.Pattern[str]] = []
    for raw in lines:
        line = raw.strip()
        if len(line) >= 2 and line.startswith("/") and line.endswith("/"):
            patterns.append(re.compile(line[1:-1]))
        elif line:
            exact.add(line.lower())
    return frozenset(exact), tuple(patterns)


def build_rules(
    entries: list[tuple[str, int | None, int, Window, tuple[str, ...]]],
    *,
    custom: tuple[CustomKind, ...] = (),
    max_merges: int = MAX_MERGES,
    max_identities: int = MAX_IDENTITIES,
    alias_merges: bool = True,
) -> IdentityRules:
    """Rules from `(kind, priority or None, limit, window, blocked lines)`: ranked kinds by
    priority, then the unranked alphabetically."""
    ranked = sorted((e for e in entries if e[1] is not None), key=lambda e: (e[1], e[0]))
    unranked = sorted((e for e in entries if e[1] is None), key=lambda e: e[0])
    kinds = {}
    for rank, (kind, _, limit, window, blocked) in enumerate([*ranked, *unranked], start=1):
        exact, patterns = parse_blocked(blocked)
        kinds[kind] = KindRule(kind, rank, limit, window, exact, patterns)
    return IdentityRules(kinds, custom, max_merges, max_identities, alias_merges)


def default_rules(**overrides: object) -> IdentityRules:
    entries = [(k, p, lim, w, DEFAULT_BLOCKED) for k, (p, lim, w) in DEFAULT_KINDS.items()]
    return build_rules(entries, **overrides)  # type: ignore[arg-type]
