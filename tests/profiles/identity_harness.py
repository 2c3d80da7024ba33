"""An in-memory stand-in for the identity tables, to run the pure planner over several
batches the way the service does: load a view, plan, apply."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

from profiles.identity.planner import GraphView, Message, Plan, ProfileView, plan
from profiles.identity.rules import IdentityRules, IdKey

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def msg(event_id: int, *ids: IdKey, t: float | None = None, previous_id: str | None = None) -> Message:
    return Message(event_id, at(event_id if t is None else t), 1, f"m{event_id}", tuple(ids), previous_id)


class Store:
    """Profiles, identities and event assignments, as the database would hold them."""

    def __init__(self) -> None:
        self.next_id = 1
        self.owner: dict[IdKey, int] = {}
        self.first_seen: dict[IdKey, datetime] = {}
        self.merge_count: dict[int, int] = {}
        self.merged_into: dict[int, int] = {}
        self.events: dict[int, int] = {}
        self.demotions: set[tuple[int, IdKey]] = set()

    def live(self, ref: int) -> int:
        while ref in self.merged_into:
            ref = self.merged_into[ref]
        return ref

    def view(self, messages: Iterable[Message]) -> GraphView:
        wanted: set[IdKey] = set()
        for m in messages:
            wanted.update(m.identifiers)
            if m.previous_id:
                wanted.update({("user_id", m.previous_id), ("anonymous_id", m.previous_id)})
        owners = {self.owner[k] for k in wanted if k in self.owner}
        return GraphView({
            p: ProfileView(p, self.merge_count[p],
                           tuple((k, self.first_seen[k]) for k, o in self.owner.items() if o == p))
            for p in owners
        })  # fmt: skip

    def apply(self, result: Plan) -> dict[int, int]:
        real: dict[int, int] = {}
        for ref in result.new_profiles:
            real[ref] = self.next_id
            self.merge_count[self.next_id] = 0
            self.next_id += 1

        def r(ref: int) -> int:
            return real.get(ref, ref)

        for loser, winner in result.final_winner.items():
            w = r(winner)
            self.merge_count[w] += self.merge_count.pop(loser) + 1
            self.merged_into[loser] = w
            for k, o in list(self.owner.items()):
                if o == loser:
                    self.owner[k] = w
            for e, p in list(self.events.items()):
                if p == loser:
                    self.events[e] = w
        for n in result.new_identities:
            self.owner[n.key] = r(n.profile)
            self.first_seen[n.key] = n.first_seen
        for event, ref in result.assignments.items():
            self.events[event] = r(ref)
        for d in result.demotions:
            self.demotions.add((d.event_id, d.key))
        return real

    def run(self, messages: list[Message], rules: IdentityRules) -> Plan:
        result = plan(messages, self.view(messages), rules)
        self.apply(result)
        return result

    def profiles(self) -> set[frozenset[IdKey]]:
        groups: dict[int, set[IdKey]] = {}
        for k, o in self.owner.items():
            groups.setdefault(o, set()).add(k)
        return {frozenset(g) for g in groups.values()}
