"""Identity resolution, applied to stored events.

`events_resolve` works one transaction per chunk of events. Each transaction claims its
events (row locks that other workers skip; with a backlog, also the oldest unprocessed
events after them), extracts their identifiers, locks the identifiers no profile owns yet
(advisory locks, in hash order) and the profiles that own the others (row locks, in id
order), loads the graph view, runs the pure planner, and writes the plan in bulk: new
profiles, merges (identities, events and tombstones re-pointed, traits merged), new
identities, links, demotions, assignments with their processing mark, and the traits the
events set. Lock order is always events, identifiers, then profiles, each sorted, so
concurrent workers neither deadlock nor create two profiles for one person.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.db import DatabaseError, connection, transaction
from django.utils import timezone

from profiles.db import pg_cursor
from profiles.identity.extract import EVENT_COLUMNS, event_message
from profiles.identity.planner import GraphView, Message, Plan, ProfileView, plan
from profiles.identity.rules import IdentityRules, IdKey
from profiles.models import Demotion, Event, Identity, IdentityLink, Merge, Profile, new_profile_key
from profiles.services.bulk import resolution_settings, rows_insert, rows_update
from profiles.services.graph import profile_fold, profiles_repoint
from profiles.services.identity_settings import identity_kinds_register, identity_rules
from profiles.traits import TraitUpdate, event_trait_updates, traits_apply_updates

# Events of a task per transaction (the sweep hands over 500 at a time).
RESOLVE_CHUNK = 250
# With a backlog, one transaction claims up to this many events in all: the given ones and
# the oldest unprocessed events stored after them. Measured (in-process, 67k events): at
# 100 events a transaction, resolution cost 175 µs of Python and 175 µs of PostgreSQL CPU
# an event; at 1,000, 92 and 90: most of a transaction's cost is fixed.
CLAIM_BATCH = 1000
# Above this many identifiers not stored yet, a transaction locks all of resolution (one
# exclusive advisory lock) instead of each identifier: PostgreSQL's lock table holds 64
# locks per connection by default (max_locks_per_transaction), shared by all sessions.
MAX_IDENTIFIER_LOCKS = 500
# How often to re-read the graph when a concurrent merge moved it under us.
LOCK_ATTEMPTS = 8
# last_seen_at is moved forward only by at least this much, to spare a write per
# identifier per event for an active user.
LAST_SEEN_RESOLUTION = timedelta(minutes=1)
# The advisory lock every resolving transaction holds shared, and one with too many new
# identifiers holds exclusively. The two-int form keeps it apart from the identifier
# locks, which are single 64-bit hashes.
_ALL_IDENTIFIERS = (0x43445052, 1)  # "CDPR", 1


class ResolutionContention(DatabaseError):
    """The graph kept changing under concurrent merges; the task retries."""


@dataclass
class ResolveResult:
    changed_profile_ids: set[int] = field(default_factory=set)
    resolved: int = 0
    unresolved: int = 0
    marked_ids: set[int] = field(default_factory=set)  # marked processed by this run


@dataclass(slots=True)
class _ProfileState:
    """A locked profile's columns that resolution reads and writes (a `Profile` instance
    cost more to build than the rest of its work)."""

    id: int
    merge_count: int
    first_seen_at: datetime | None
    last_seen_at: datetime | None
    traits: dict[str, Any]
    trait_meta: dict[str, Any]
    dirty: bool = False


@dataclass(frozen=True, slots=True)
class _EventFacts:
    message: Message
    type: str
    traits: Any
    context: Any


def events_resolve(
    *, event_ids: Sequence[int], processed_at: datetime | None = None, backlog: int = 0
) -> ResolveResult:
    """Resolve the given events that have no profile yet. Idempotent: resolved events are
    skipped, so running it twice changes nothing. Returns the profiles it changed.

    Each transaction first claims its events (row locks, skipping rows another worker
    holds: that worker resolves them). With `backlog`, it also claims up to that many more
    unprocessed events stored after the given ones, oldest first, up to `CLAIM_BATCH` in
    all: under load a task resolves many ingest batches at once, which costs far less per
    event, and the tasks of the events it took find nothing left to do.

    With `processed_at`, every event it claims is marked processed in the same
    transaction, the resolved ones in the same UPDATE that assigns their profile (a second
    UPDATE of every event row cost a third of resolution's time)."""
    result = ResolveResult()
    rules: list[IdentityRules] = []

    def current_rules() -> IdentityRules:  # read once, and only when there is work
        if not rules:
            rules.append(identity_rules())
        return rules[0]

    ids = list(event_ids)
    for start in range(0, len(ids), RESOLVE_CHUNK):
        chunk = ids[start : start + RESOLVE_CHUNK]
        more = min(backlog, CLAIM_BATCH - len(chunk)) if start == 0 else 0
        _resolve_chunk(chunk, more, current_rules, result, processed_at)
    return result


_EVENTS = Event._meta.db_table
_CLAIM_COLUMNS = ("profile_id", *EVENT_COLUMNS)
# Which of the given events, and of the ids after `start`, are unprocessed: primary-key
# reads only. A `processed_at IS NULL` condition would invite the partial index of
# unprocessed events, whose size PostgreSQL cannot know (statistics say "none", as nearly
# every event is processed): it then read the whole backlog into each claim and sorted it
# (measured: 25 ms per claim of 1,000 at a 67k backlog, against 1 ms).
_PENDING_SQL = (
    f"SELECT id, processed_at IS NULL FROM {_EVENTS} WHERE id = ANY(%b) "
    f"UNION ALL (SELECT id, processed_at IS NULL FROM {_EVENTS} WHERE id > %b ORDER BY id LIMIT %b)"
)
# Then the claim: a row lock on each, skipping rows another transaction holds (it is
# resolving them), and the check again under the lock.
_CLAIM_SQL = (
    f"SELECT processed_at, {', '.join(_CLAIM_COLUMNS)} FROM {_EVENTS} WHERE id = ANY(%b) FOR NO KEY UPDATE SKIP LOCKED"
)
# Where this process's next backlog search starts: past every id it has claimed or found
# done. Only a hint (another worker's claims are found done, a restart starts again from
# the given ids), it keeps a worker from re-reading what earlier claims took: under load,
# claims run ahead of the tasks that name the events.
_frontier = 0


def _pending(event_ids: list[int], backlog: int) -> list[int]:
    """The given events that are unprocessed, and up to `backlog` unprocessed events after
    them (the oldest past this process's frontier)."""
    global _frontier
    last = max(event_ids, default=0)
    start = max(last, _frontier)
    if connection.vendor != "postgresql":
        pending = Event.objects.filter(processed_at__isnull=True)
        wanted = list(pending.filter(id__in=event_ids).values_list("id", flat=True))
        if backlog:
            more = list(pending.filter(id__gt=start).order_by("id").values_list("id", flat=True)[:backlog])
            if more:
                _frontier = max(_frontier, more[-1])
            wanted += more
        return wanted
    with pg_cursor(binary=True) as cursor:
        # Room for rows another worker has taken meanwhile.
        cursor.execute(_PENDING_SQL, [event_ids, start, backlog + backlog // 4])
        found = cursor.fetchall()
    own = set(event_ids)
    wanted = [event_id for event_id, pending in found if pending and event_id in own]
    after = sorted(row for row in found if row[0] not in own)
    if not after:  # nothing is stored past the frontier: it may be stale (a database restored)
        _frontier = last
    taken = passed = 0
    for event_id, pending in after:
        if taken == backlog:
            break
        passed = event_id
        if pending:
            wanted.append(event_id)
            taken += 1
    _frontier = max(_frontier, passed)
    return wanted


def _claim_rows(event_ids: list[int]) -> list[tuple[Any, ...]]:
    """`(profile_id, *EVENT_COLUMNS)` of those of `event_ids` this transaction takes: the
    unprocessed ones no other transaction holds, in (timestamp, id) order (the order the
    planner replays them in)."""
    if connection.vendor == "postgresql":
        with pg_cursor(parse_json=True, binary=True) as cursor:
            cursor.execute(_CLAIM_SQL, [event_ids])
            rows = [row[1:] for row in cursor.fetchall() if row[0] is None]
    else:  # SQLite: IMMEDIATE transactions already run one writer at a time
        rows = list(Event.objects.filter(id__in=event_ids, processed_at__isnull=True).values_list(*_CLAIM_COLUMNS))
    return sorted(rows, key=lambda row: (row[2], row[1]))


def _keys(facts: Iterable[_EventFacts]) -> set[IdKey]:
    keys: set[IdKey] = set()
    for f in facts:
        keys.update(f.message.identifiers)
        if f.message.previous_id:
            keys.update({("user_id", f.message.previous_id), ("anonymous_id", f.message.previous_id)})
    return keys


def _lock_hash(key: IdKey) -> int:
    digest = hashlib.blake2b(f"{key[0]}\x00{key[1]}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def _lock_identifiers(new: set[IdKey]) -> None:
    """Advisory locks on the identifiers no profile owns yet, in one fixed order, so two
    workers never both create one (identifiers already stored are guarded by their
    profile's row lock, taken next). Every resolving transaction holds one lock shared;
    one with too many new identifiers takes it exclusively instead, and waits for the
    others. SQLite needs none: its IMMEDIATE transactions run one writer at a time."""
    if connection.vendor != "postgresql":
        return
    hashes = sorted({_lock_hash(k) for k in new})
    with connection.cursor() as cursor:
        if len(hashes) > MAX_IDENTIFIER_LOCKS:
            cursor.execute("SELECT pg_advisory_xact_lock(%s, %s)", _ALL_IDENTIFIERS)
            return
        cursor.execute("SELECT pg_advisory_xact_lock_shared(%s, %s)", _ALL_IDENTIFIERS)
        if hashes:
            cursor.execute("SELECT count(pg_advisory_xact_lock(k)) FROM unnest(%s::bigint[]) AS k", [hashes])


def _owners(keys: Iterable[IdKey]) -> dict[IdKey, int]:
    """The profile that owns each of `keys` that is stored."""
    ordered = sorted(keys)
    if not ordered:
        return {}
    if connection.vendor == "postgresql":
        # Arrays on a server-side-bound cursor: one statement text whatever the count (a
        # VALUES list was parsed and planned anew each time: 17 µs an event).
        with pg_cursor(binary=True) as cursor:
            cursor.execute(
                f"SELECT kind, value, profile_id FROM {Identity._meta.db_table} "
                "WHERE (kind, value) IN (SELECT * FROM unnest(%b::text[], %b::text[]))",
                [[k for k, _ in ordered], [v for _, v in ordered]],
            )
            rows = cursor.fetchall()
    else:
        with connection.cursor() as cursor:
            cursor.execute(
                f"SELECT kind, value, profile_id FROM {Identity._meta.db_table} "
                f"WHERE (kind, value) IN (VALUES {', '.join(['(%s, %s)'] * len(ordered))})",
                [part for key in ordered for part in key],
            )
            rows = cursor.fetchall()
    return {(kind, value): profile_id for kind, value, profile_id in rows}


_PROFILE_COLUMNS = ("id", "merged_into_id", "merge_count", "first_seen_at", "last_seen_at", "traits", "trait_meta")
_IDENTITY_COLUMNS = ("id", "kind", "value", "first_seen_at", "last_seen_at", "profile_id", "separations")


def _lock_profiles(ids: list[int]) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """Lock the profiles `ids` (in id order) and read them with all their identities."""
    if connection.vendor != "postgresql":
        profiles = list(Profile.objects.filter(id__in=ids).order_by("id").values_list(*_PROFILE_COLUMNS))
        return profiles, list(Identity.objects.filter(profile_id__in=ids).values_list(*_IDENTITY_COLUMNS))
    with pg_cursor(parse_json=True, binary=True) as cursor:
        # NO KEY UPDATE: the ids never change, so inserts that reference these profiles
        # (their foreign-key checks take KEY SHARE) are not blocked by the lock.
        cursor.execute(
            f"SELECT {', '.join(_PROFILE_COLUMNS)} FROM {Profile._meta.db_table} WHERE id = ANY(%b) "
            "ORDER BY id FOR NO KEY UPDATE",
            [ids],
        )
        profiles = cursor.fetchall()
        cursor.execute(
            f"SELECT {', '.join(_IDENTITY_COLUMNS)} FROM {Identity._meta.db_table} WHERE profile_id = ANY(%b)", [ids]
        )
        return profiles, cursor.fetchall()


def _lock_view(
    keys: set[IdKey], owners: dict[IdKey, int]
) -> tuple[GraphView, dict[int, _ProfileState], dict[IdKey, tuple[int, datetime]]]:
    """Lock the live profiles owning `keys` (`owners`, as read under the identifier locks)
    and load their whole identity sets. Re-reads when a concurrent merge, split or delete
    moved an identifier meanwhile: a profile gone or merged away, or an owner that no
    longer holds the identifier."""
    for attempt in range(LOCK_ATTEMPTS):
        if attempt:
            owners = _owners(keys)
        ids = sorted(set(owners.values()))
        savepoint = transaction.savepoint()
        profiles, rows = _lock_profiles(ids)
        holder = {(kind, value): profile_id for _, kind, value, _, _, profile_id, _ in rows}
        if (
            len(profiles) == len(ids)
            and all(row[1] is None for row in profiles)
            and all(holder.get(key) == profile_id for key, profile_id in owners.items())
        ):
            transaction.savepoint_commit(savepoint)
            break
        transaction.savepoint_rollback(savepoint)
    else:
        raise ResolutionContention("the identity graph kept changing under concurrent merges")
    held: dict[int, list[tuple[IdKey, datetime]]] = defaultdict(list)
    known: dict[IdKey, tuple[int, datetime]] = {}
    labels: dict[IdKey, dict[int, int]] = {}
    for identity_id, kind, value, first_seen, last_seen, profile_id, separations in rows:
        held[profile_id].append(((kind, value), first_seen))
        known[(kind, value)] = (identity_id, last_seen)
        if separations:
            labels[(kind, value)] = {int(split): side for split, side in separations.items()}
    states = {
        pid: _ProfileState(pid, merges, first, last, traits, meta)
        for pid, _, merges, first, last, traits, meta in profiles
    }
    view = GraphView({pid: ProfileView(pid, s.merge_count, tuple(held[pid])) for pid, s in states.items()}, labels)
    return view, states, known


def _resolve_chunk(
    event_ids: list[int],
    backlog: int,
    rules: Callable[[], IdentityRules],
    result: ResolveResult,
    processed_at: datetime | None,
) -> None:
    wanted = _pending(event_ids, backlog)  # before any transaction: a task with nothing left is one read
    if not wanted:
        return
    with transaction.atomic():
        resolution_settings()
        claimed = _claim_rows(wanted)
        if not claimed:
            return
        facts: list[_EventFacts] = []
        done: list[int] = []  # claimed and needing no resolution: only the processing mark
        for row in claimed:
            if row[0] is not None:  # resolved earlier without the mark
                done.append(row[1])
            else:
                facts.append(_EventFacts(event_message(row[1:], rules()), row[5], row[9], row[10]))
        if facts:
            identity_kinds_register(kinds={k for f in facts for k, _ in f.message.identifiers}, rules=rules())
            keys = _keys(facts)
            owners = _owners(keys)
            new = keys - owners.keys()
            _lock_identifiers(new)
            owners |= _owners(new)  # stored meanwhile by a worker that held their locks
            view, states, known = _lock_view(keys, owners)
            outcome = plan([f.message for f in facts], view, rules())
            _apply(outcome, facts, states, known, result, processed_at)
            done.extend(outcome.unresolved)
        if processed_at is not None and done:
            rows_update(table=_EVENTS, columns=[], constants=[("processed_at", "timestamptz", processed_at)],
                        rows=[(event_id,) for event_id in done])  # fmt: skip
            result.marked_ids.update(done)


def _apply(
    outcome: Plan,
    facts: list[_EventFacts],
    states: dict[int, _ProfileState],
    known: dict[IdKey, tuple[int, datetime]],
    result: ResolveResult,
    processed_at: datetime | None,
) -> None:
    now = timezone.now()
    by_event = {f.message.event_id: f for f in facts}
    real = _create_profiles(outcome, states, now)

    def r(ref: int) -> int:
        return real.get(ref, ref)

    _merge_profiles(outcome, states, by_event, now)
    _insert_identities(outcome, r, known)
    _touch_identities(outcome, known)
    _insert_links(outcome, by_event, known)
    rows_insert(
        table=Demotion._meta.db_table,
        columns=[("event_id", "bigint"), ("message_id", "text"), ("kind", "text"), ("value", "text"),
                 ("rule", "text"), ("profile_id", "bigint")],
        constants=[("created_at", "timestamptz", now)],
        rows=[
            (d.event_id, by_event[d.event_id].message.message_id, d.key[0], d.key[1], d.rule,
             r(d.profile) if d.profile is not None else None)
            for d in outcome.demotions
        ],
        skip_conflicts=True,
    )  # fmt: skip
    assignments = {event: r(ref) for event, ref in outcome.assignments.items()}
    _assign_events(assignments, processed_at)
    if processed_at is not None:
        result.marked_ids.update(assignments)
    _apply_traits_and_seen(assignments, by_event, states, now)
    result.changed_profile_ids.update(assignments.values())
    result.resolved += len(assignments)
    result.unresolved += len(outcome.unresolved)


def _create_profiles(outcome: Plan, states: dict[int, _ProfileState], now: datetime) -> dict[int, int]:
    if not outcome.new_profiles:
        return {}
    ids = rows_insert(
        table=Profile._meta.db_table,
        columns=[("key", "text")],
        constants=[("created_at", "timestamptz", now), ("updated_at", "timestamptz", now), ("traits", "jsonb", {}),
                   ("trait_meta", "jsonb", {}), ("merge_count", "int4", 0)],
        rows=[(new_profile_key(),) for _ in outcome.new_profiles],
        returning="id",
    )  # fmt: skip
    for pid in ids:
        states[pid] = _ProfileState(pid, 0, None, None, {}, {}, dirty=True)
    return dict(zip(outcome.new_profiles, ids, strict=True))


def _merge_profiles(
    outcome: Plan, states: dict[int, _ProfileState], by_event: dict[int, _EventFacts], now: datetime
) -> None:
    """Merged-away profiles: identities, events and older tombstones move to the final
    winner, traits merge (newest wins), and each step is recorded as a `Merge`."""
    if not outcome.merges:
        return
    for step in outcome.merges:
        profile_fold(kept=states[step.winner], gone=states[step.loser])
        states[step.winner].dirty = True
    profiles_repoint(winners=outcome.final_winner, now=now)
    for loser in outcome.final_winner:
        states.pop(loser, None)
    for profile_id, count in outcome.merge_counts.items():
        if profile_id in states:
            states[profile_id].merge_count = count
    rows_insert(
        table=Merge._meta.db_table,
        columns=[("winner_id", "bigint"), ("loser_id", "bigint"), ("event_id", "bigint"), ("message_id", "text"),
                 ("identifiers", "jsonb")],
        constants=[("reason", "text", ""), ("created_at", "timestamptz", now)],
        rows=[
            (s.winner, s.loser, s.event_id, by_event[s.event_id].message.message_id,
             [f"{k}:{v}" for k, v in s.identifiers])
            for s in outcome.merges
        ],
    )  # fmt: skip


def _insert_identities(outcome: Plan, r: Any, known: dict[IdKey, tuple[int, datetime]]) -> None:
    if not outcome.new_identities:
        return
    rows: list[tuple[Any, ...]] = [
        (n.key[0], n.key[1], r(n.profile), n.first_seen, outcome.seen[n.key][1], n.event_id, n.message_id,
         n.source_id)
        for n in outcome.new_identities
    ]  # fmt: skip
    ids = rows_insert(
        table=Identity._meta.db_table,
        columns=[("kind", "text"), ("value", "text"), ("profile_id", "bigint"), ("first_seen_at", "timestamptz"),
                 ("last_seen_at", "timestamptz"), ("first_event_id", "bigint"), ("first_message_id", "text"),
                 ("source_id", "int4")],
        constants=[("separations", "jsonb", {})],
        rows=rows,
        returning="id",
    )  # fmt: skip
    for identity_id, row in zip(ids, rows, strict=True):
        known[(row[0], row[1])] = (identity_id, row[4])


def _touch_identities(outcome: Plan, known: dict[IdKey, tuple[int, datetime]]) -> None:
    """Move last_seen_at forward; never back (a late event leaves it alone)."""
    stale = [
        (last, known[key][0])
        for key, (_, last) in outcome.seen.items()
        if key in known and last - known[key][1] >= LAST_SEEN_RESOLUTION
    ]
    rows_update(
        table=Identity._meta.db_table,
        columns=[("last_seen_at", "timestamptz")],
        rows=[(identity_id, last) for last, identity_id in stale],
        set_sql={"last_seen_at": "GREATEST({old}, {new})"},
    )


def _insert_links(outcome: Plan, by_event: dict[int, _EventFacts], known: dict[IdKey, tuple[int, datetime]]) -> None:
    """Every pair of identifiers seen together, once, with the first message that carried
    it. `known` holds the id of every identifier a plan's message kept (loaded or new)."""
    rows_insert(
        table=IdentityLink._meta.db_table,
        columns=[("a_id", "bigint"), ("b_id", "bigint"), ("first_event_id", "bigint"), ("first_message_id", "text"),
                 ("first_seen_at", "timestamptz")],
        rows=[
            (known[link.a][0], known[link.b][0], link.event_id, by_event[link.event_id].message.message_id,
             link.timestamp)
            for link in outcome.links
        ],
        skip_conflicts=True,
    )  # fmt: skip


def _assign_events(assignments: dict[int, int], processed_at: datetime | None) -> None:
    if processed_at is None:
        rows_update(table=Event._meta.db_table, columns=[("profile_id", "bigint")], rows=list(assignments.items()))
        return
    rows_update(
        table=Event._meta.db_table,
        columns=[("profile_id", "bigint")],
        constants=[("processed_at", "timestamptz", processed_at)],
        rows=list(assignments.items()),
        set_sql={"processed_at": "COALESCE({old}, {new})"},
    )


def _apply_traits_and_seen(
    assignments: dict[int, int], by_event: dict[int, _EventFacts], states: dict[int, _ProfileState], now: datetime
) -> None:
    """The traits the events set (identify traits, context.traits), and first/last seen,
    on the profiles they now belong to; then one bulk update of the profiles touched."""
    updates: dict[int, list[TraitUpdate]] = defaultdict(list)
    seen: dict[int, tuple[datetime, datetime]] = {}
    for event_id, profile_id in assignments.items():
        f = by_event[event_id]
        at = f.message.timestamp
        updates[profile_id] += event_trait_updates(
            type_=f.type,
            traits=f.traits,
            context=f.context,
            at=at,
            source_id=f.message.source_id,
            message_id=f.message.message_id,
        )
        lo, hi = seen.get(profile_id, (at, at))
        seen[profile_id] = (min(lo, at), max(hi, at))
    for profile_id, (lo, hi) in seen.items():
        p = states[profile_id]
        if p.first_seen_at is None or lo < p.first_seen_at:
            p.first_seen_at, p.dirty = lo, True
        if p.last_seen_at is None or hi > p.last_seen_at:
            p.last_seen_at, p.dirty = hi, True
        if updates.get(profile_id):
            p.traits, p.trait_meta, _ = traits_apply_updates(p.traits, p.trait_meta, updates[profile_id])
            p.dirty = True
    rows_update(
        table=Profile._meta.db_table,
        columns=[("first_seen_at", "timestamptz"), ("last_seen_at", "timestamptz"), ("traits", "jsonb"),
                 ("trait_meta", "jsonb"), ("merge_count", "int4")],
        constants=[("updated_at", "timestamptz", now)],
        rows=[
            (p.id, p.first_seen_at, p.last_seen_at, p.traits, p.trait_meta, p.merge_count)
            for p in states.values()
            if p.dirty
        ],
    )  # fmt: skip
