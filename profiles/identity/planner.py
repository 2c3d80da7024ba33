"""The identity planner: Segment's flat matching with merge protection, as a pure function.

    plan(messages, graph_view, rules) -> Plan

For each message, in the order given:
1. find the profiles that own any of its identifiers;
2. none: create a profile; one: attach the new identifiers; several: merge them into the
   oldest (existing profiles are older than new ones, and older among themselves by id);
3. if the result would break a kind's limit (count within its window) or a per-profile cap
   (merges, identifiers), demote the message's least trusted identifier and try again.

A limit only counts when the change makes things worse: a profile already over a limit
(because settings were tightened later) keeps resolving events, as Segment does.
No ORM, no clock: everything comes in as frozen data and goes out as a `Plan`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from itertools import combinations

from profiles.identity.rules import IdentityRules, IdKey

# Links record which identifiers were seen together. A message with a handful of identifiers
# links every pair; beyond that a star from the most trusted one keeps the edge count linear.
_CLIQUE_MAX = 6
_VIRTUAL_AGE = 1 << 62


@dataclass(frozen=True, slots=True)
class Message:
    event_id: int
    timestamp: datetime
    source_id: int
    message_id: str
    identifiers: tuple[IdKey, ...]  # most trusted first, blocked values already removed
    previous_id: str | None = None  # alias calls only


@dataclass(frozen=True, slots=True)
class ProfileView:
    id: int
    merge_count: int
    identities: tuple[tuple[IdKey, datetime], ...]  # every identifier it owns, with first_seen


Labels = Mapping[int, int]  # split id -> the side of that split an identifier was put on


@dataclass(frozen=True)
class GraphView:
    """The live profiles owning any identifier of the batch, each with all its identifiers,
    and the split labels of identifiers: a staff split puts identifiers on sides, and no
    merge may bring two sides of one split together again."""

    profiles: Mapping[int, ProfileView] = field(default_factory=dict)
    labels: Mapping[IdKey, Labels] = field(default_factory=dict)

    @classmethod
    def empty(cls) -> GraphView:
        return cls({}, {})


@dataclass(frozen=True, slots=True)
class NewIdentity:
    key: IdKey
    profile: int
    first_seen: datetime
    event_id: int
    source_id: int
    message_id: str


@dataclass(frozen=True, slots=True)
class MergeStep:
    winner: int
    loser: int
    event_id: int
    identifiers: tuple[IdKey, ...]


@dataclass(frozen=True, slots=True)
class DemotionStep:
    event_id: int
    key: IdKey
    rule: str
    profile: int | None


@dataclass(frozen=True, slots=True)
class LinkStep:
    a: IdKey
    b: IdKey
    event_id: int
    timestamp: datetime


@dataclass(frozen=True)
class Plan:
    """What to write. Profile references are existing ids (> 0) or new profiles (< 0,
    numbered in creation order). Every reference in it is final: merged-away ones are
    already followed to their winner, except `MergeStep`, which keeps the history."""

    new_profiles: tuple[int, ...]
    assignments: Mapping[int, int]  # event id -> profile
    new_identities: tuple[NewIdentity, ...]
    merges: tuple[MergeStep, ...]  # between existing profiles, in order
    final_winner: Mapping[int, int]  # every merged-away existing profile -> its final winner
    merge_counts: Mapping[int, int]  # profiles that absorbed others -> their merge count now
    demotions: tuple[DemotionStep, ...]
    links: tuple[LinkStep, ...]  # each pair seen together, once: with the first message that carried it
    seen: Mapping[IdKey, tuple[datetime, datetime]]  # identifier -> first and last seen in this batch
    unresolved: tuple[int, ...]  # events with no usable identifier
    changed: frozenset[int]


def _age(ref: int) -> int:
    return ref if ref > 0 else _VIRTUAL_AGE - ref


class _Graph:
    """The planner's working copy: who owns what, and what each profile holds."""

    def __init__(self, view: GraphView) -> None:
        self.owner: dict[IdKey, int] = {}
        self.keys: dict[int, set[IdKey]] = {}
        self.times: dict[int, dict[str, list[datetime]]] = {}
        self.merges: dict[int, int] = {}
        self.sides: dict[int, dict[int, int]] = {}
        self.labels = view.labels
        for profile in view.profiles.values():
            self.create(profile.id)
            self.merges[profile.id] = profile.merge_count
            for key, first_seen in profile.identities:
                self.add(profile.id, key, first_seen)

    def add(self, ref: int, key: IdKey, first_seen: datetime) -> None:
        self.owner[key] = ref
        self.keys[ref].add(key)
        self.times[ref].setdefault(key[0], []).append(first_seen)
        if key in self.labels:
            self.sides[ref].update(self.labels[key])

    def create(self, ref: int) -> None:
        self.keys[ref], self.times[ref], self.merges[ref], self.sides[ref] = set(), {}, 0, {}

    def absorb(self, winner: int, loser: int) -> None:
        for key in self.keys[loser]:
            self.owner[key] = winner
        self.keys[winner] |= self.keys.pop(loser)
        for kind, times in self.times.pop(loser).items():
            self.times[winner].setdefault(kind, []).extend(times)
        self.merges[winner] += self.merges.pop(loser) + 1
        self.sides[winner].update(self.sides.pop(loser))

    def split_crossed(self, owners: Sequence[int], new: Sequence[IdKey]) -> int | None:
        """The split whose two sides this change would bring together, if any."""
        if not self.labels:
            return None
        combined: dict[int, int] = {}
        for sides in [*(self.sides[o] for o in owners), *(self.labels.get(k, {}) for k in new)]:
            for split, side in sides.items():
                if combined.setdefault(split, side) != side:
                    return split
        return None


def _densest(times: list[datetime], span: timedelta | None) -> int:
    """How many of `times` fall within the busiest window of length `span` (all of them
    when the limit is for ever). Windows are half-open: (t - span, t]."""
    if span is None or len(times) < 2:
        return len(times)
    ordered = sorted(times)
    best = start = 0
    for end, t in enumerate(ordered):
        while ordered[start] <= t - span:
            start += 1
        best = max(best, end - start + 1)
    return best


class _Planner:
    def __init__(self, view: GraphView, rules: IdentityRules) -> None:
        self.g = _Graph(view)
        self.rules = rules
        self.next_virtual = -1
        self.new_profiles: list[int] = []
        self.assignments: dict[int, int] = {}
        self.new_identities: list[NewIdentity] = []
        self.merges: list[MergeStep] = []
        self.forward: dict[int, int] = {}
        self.demotions: list[DemotionStep] = []
        self.links: list[LinkStep] = []
        self.linked: set[tuple[IdKey, IdKey]] = set()
        self.seen: dict[IdKey, tuple[datetime, datetime]] = {}
        self.unresolved: list[int] = []
        self.changed: set[int] = set()

    def identifiers(self, message: Message) -> list[IdKey]:
        ids = list(message.identifiers)
        if message.previous_id and self.rules.alias_merges:
            # previousId names the identity being aliased: a known user id, else (the usual
            # case, analytics.js's alias after sign-up) an anonymous id.
            kind = "user_id" if ("user_id", message.previous_id) in self.g.owner else "anonymous_id"
            key = (kind, message.previous_id)
            if key not in ids and not self.rules.rule(kind).blocks(message.previous_id):
                ids.append(key)
                ids.sort(key=self.rules.rank_key)
        return ids

    def violation(self, owners: Sequence[int], new: Sequence[IdKey], at: datetime) -> str | None:
        """The rule the attach or merge would break, or None."""
        g, rules = self.g, self.rules
        if len(owners) > 1 and sum(g.merges[o] for o in owners) + len(owners) - 1 > rules.max_merges:
            return f"merges cap {rules.max_merges}"
        split = g.split_crossed(owners, new)
        if split is not None:
            return f"kept apart by split {split}"
        kinds = {key[0] for key in new}
        if len(owners) > 1:
            kinds.update(kind for o in owners for kind in g.times[o])
        for kind in sorted(kinds, key=lambda k: (rules.rule(k).rank, k)):  # report the most trusted rule broken
            # A limit holds in every window, not only the one ending now: identifiers keep
            # their first-seen time through a merge, so a merge can crowd an old week too.
            rule = rules.rule(kind)
            span = rule.window.span
            held = [g.times[o].get(kind, []) for o in owners]
            union = [t for times in held for t in times] + [at for key in new if key[0] == kind]
            after = _densest(union, span)
            if after > rule.limit and after > max((_densest(t, span) for t in held), default=0):
                return rule.describe()
        totals = [len(g.keys[o]) for o in owners]
        after = sum(totals) + len(new)
        if after > rules.max_identities and after > max(totals, default=0):
            return f"identifiers cap {rules.max_identities}"
        return None

    def step(self, message: Message) -> None:
        ids = self.identifiers(message)
        if not ids:
            self.unresolved.append(message.event_id)
            return
        g, at = self.g, message.timestamp
        owner = g.owner.get(ids[0])
        if owner is not None and all(g.owner.get(key) == owner for key in ids):
            # The common case, a known person: one profile holds every identifier already,
            # so nothing is added or merged and no rule can break.
            owners, new = [owner], []
        else:
            while True:
                owners = sorted({g.owner[key] for key in ids if key in g.owner}, key=_age)
                new = [key for key in ids if key not in g.owner]
                broken = self.violation(owners, new, at)
                if broken is None:
                    break
                # Never empty here: a single identifier, known or new, cannot break anything.
                victim = ids.pop()
                self.demotions.append(DemotionStep(message.event_id, victim, broken, owners[0] if owners else None))

        if owners:
            winner = owners[0]
        else:
            winner = self.next_virtual
            self.next_virtual -= 1
            g.create(winner)
            self.new_profiles.append(winner)
        for loser in owners[1:]:
            g.absorb(winner, loser)
            self.forward[loser] = winner
            if loser > 0:
                self.merges.append(MergeStep(winner, loser, message.event_id, tuple(ids)))
        for key in new:
            g.add(winner, key, at)
            self.new_identities.append(
                NewIdentity(key, winner, at, message.event_id, message.source_id, message.message_id)
            )
        pairs = combinations(ids, 2) if len(ids) <= _CLIQUE_MAX else ((ids[0], other) for other in ids[1:])
        for a, b in pairs:
            pair = (a, b) if a <= b else (b, a)
            if pair not in self.linked:
                self.linked.add(pair)
                self.links.append(LinkStep(*pair, message.event_id, at))
        seen = self.seen
        for key in ids:
            span = seen.get(key)
            if span is None:
                seen[key] = (at, at)
            elif at < span[0] or at > span[1]:
                seen[key] = (min(span[0], at), max(span[1], at))
        self.assignments[message.event_id] = winner
        self.changed.add(winner)

    def final(self, ref: int) -> int:
        while ref in self.forward:
            ref = self.forward[ref]
        return ref

    def result(self) -> Plan:
        final = self.final
        return Plan(
            new_profiles=tuple(r for r in self.new_profiles if r not in self.forward),
            assignments={event: final(ref) for event, ref in self.assignments.items()},
            new_identities=tuple(
                NewIdentity(n.key, final(n.profile), n.first_seen, n.event_id, n.source_id, n.message_id)
                for n in self.new_identities
            ),
            merges=tuple(self.merges),
            final_winner={loser: final(loser) for loser in self.forward if loser > 0},
            merge_counts={final(w): self.g.merges[final(w)] for w in self.forward.values()},
            demotions=tuple(
                DemotionStep(d.event_id, d.key, d.rule, final(d.profile) if d.profile is not None else None)
                for d in self.demotions
            ),
            links=tuple(self.links),
            seen=self.seen,
            unresolved=tuple(self.unresolved),
            changed=frozenset(final(ref) for ref in self.changed),
        )


def merge_violation(view: GraphView, rules: IdentityRules, at: datetime) -> str | None:
    """The rule that merging every profile of `view` into one would break, or None."""
    planner = _Planner(view, rules)
    return planner.violation(sorted(view.profiles, key=_age), [], at)


def plan(messages: Iterable[Message], view: GraphView, rules: IdentityRules) -> Plan:
    """Resolve `messages` in order against `view`. Deterministic for the same inputs."""
    planner = _Planner(view, rules)
    for message in messages:
        planner.step(message)
    return planner.result()
