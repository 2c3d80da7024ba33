"""Identity resolution, applied to stored events.

`events_resolve` loads a chunk of unresolved events, extracts their identifiers, and in one
transaction per chunk: locks the identifiers (PostgreSQL advisory locks, in hash order) and
the profiles that own them (row locks, in id order), loads the graph view, runs the pure
planner, and writes the plan in bulk: new profiles, merges (identities, events and
tombstones re-pointed, traits merged), new identities, links, demotions, assignments, and
the traits the events set. Lock order is always identifiers then profiles, each sorted, so
concurrent workers neither deadlock nor create two profiles for one person.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import orjson
from django.db import DatabaseError, connection, transaction
from django.utils import timezone

from profiles.db import pg_cursor
from profiles.identity.extract import EVENT_COLUMNS, event_message
from profiles.identity.planner import GraphView, Message, Plan, ProfileView, plan
from profiles.identity.rules import IdentityRules, IdKey
from profiles.models import Demotion, Event, Identity, IdentityLink, Merge, Profile, new_profile_key
from profiles.services.bulk import commit_without_flush, rows_insert, rows_update
from profiles.services.graph import profile_fold, profile_repoint
from profiles.services.identity_settings import identity_kinds_register, identity_rules
from profiles.traits import TraitUpdate, event_trait_updates, traits_apply_updates

# Events per transaction. Each holds an advisory lock per distinct identifier (PostgreSQL's
# lock table has room for 64 x max_connections), and a chunk this size resolves in about
# 20 ms; bigger chunks hold locks longer without saving much.
RESOLVE_CHUNK = 250
# How often to re-read the graph when a concurrent merge moved it under us.
LOCK_ATTEMPTS = 8
# last_seen_at is moved forward only by at least this much, to spare a write per
# identifier per event for an active user.
LAST_SEEN_RESOLUTION = timedelta(minutes=1)


class ResolutionContention(DatabaseError):
    """The graph kept changing under concurrent merges; the task retries."""


@dataclass
class ResolveResult:
    changed_profile_ids: set[int] = field(default_factory=set)
    resolved: int = 0
    unresolved: int = 0
    marked_ids: set[int] = field(default_factory=set)  # marked processed along with their profile


@dataclass
class _ProfileState:
    profile: Profile
    dirty: bool = False


@dataclass(frozen=True, slots=True)
class _EventFacts:
    message: Message
    type: str
    traits: Any
    context: Any


def events_resolve(*, event_ids: Sequence[int], processed_at: datetime | None = None) -> ResolveResult:
    """Resolve the given events that have no profile yet. Idempotent: resolved events are
    skipped, so running it twice changes nothing. Returns the profiles it changed.

    With `processed_at`, the events it assigns are marked processed in the same UPDATE:
    a second UPDATE of every event row cost a third of resolution's time (measured: 8 ms
    per 100 events), as each update of an indexed column rewrites every index entry."""
    rules = identity_rules()
    facts = _load_facts(event_ids, rules)
    identity_kinds_register(kinds={k for f in facts for k, _ in f.message.identifiers}, rules=rules)
    result = ResolveResult()
    for start in range(0, len(facts), RESOLVE_CHUNK):
        _resolve_chunk(facts[start : start + RESOLVE_CHUNK], rules, result, processed_at)
    return result


_FACT_COLUMNS = EVENT_COLUMNS


def _fact_rows(event_ids: Sequence[int]) -> list[tuple[Any, ...]]:
    """Unresolved events in (timestamp, id) order: the order the planner replays them in.
    Looked up by id alone, and filtered here: a `profile_id IS NULL` condition lets
    PostgreSQL intersect the lookup with every unresolved event of a backlog."""
    if connection.vendor == "postgresql":
        with pg_cursor(parse_json=True) as cursor:
            cursor.execute(
                f"SELECT profile_id, {', '.join(_FACT_COLUMNS)} FROM {Event._meta.db_table} WHERE id = ANY(%b)",
                [list(event_ids)],
            )
            rows = [row[1:] for row in cursor.fetchall() if row[0] is None]
        return sorted(rows, key=lambda row: (row[1], row[0]))
    return list(
        Event.objects.filter(id__in=list(event_ids), profile__isnull=True)
        .order_by("timestamp", "id")
        .values_list(*_FACT_COLUMNS)
    )


def _load_facts(event_ids: Sequence[int], rules: IdentityRules) -> list[_EventFacts]:
    return [_EventFacts(event_message(row, rules), row[4], row[8], row[9]) for row in _fact_rows(event_ids)]


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


def _lock_identifiers(keys: set[IdKey]) -> None:
    """Advisory locks on identifiers, even ones not stored yet, in one fixed order. SQLite
    needs none: its IMMEDIATE transactions already run one writer at a time."""
    if connection.vendor != "postgresql" or not keys:
        return
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(pg_advisory_xact_lock(k)) FROM unnest(%s::bigint[]) AS k",
            [sorted({_lock_hash(k) for k in keys})],
        )


def _values_sql(count: int) -> str:
    return ", ".join(["(%s, %s)"] * count)


def _owners(keys: set[IdKey]) -> dict[IdKey, int]:
    if not keys:
        return {}
    ordered = sorted(keys)
    if connection.vendor == "postgresql":
        # Arrays on a server-side-bound cursor: one prepared statement whatever the count
        # (a VALUES list was parsed and planned anew each time: 17 µs an event).
        with pg_cursor() as cursor:
            cursor.execute(
                f"SELECT kind, value, profile_id FROM {Identity._meta.db_table} "
                "WHERE (kind, value) IN (SELECT * FROM unnest(%b::text[], %b::text[]))",
                [[k for k, _ in ordered], [v for _, v in ordered]],
            )
            return {(kind, value): profile_id for kind, value, profile_id in cursor.fetchall()}
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT kind, value, profile_id FROM {Identity._meta.db_table} "
            f"WHERE (kind, value) IN (VALUES {_values_sql(len(ordered))})",
            [part for key in ordered for part in key],
        )
        return {(kind, value): profile_id for kind, value, profile_id in cursor.fetchall()}


_IDENTITY_COLUMNS = "id, kind, value, first_seen_at, last_seen_at, profile_id, separations"


def _graph_rows(profile_ids: list[int], keys: list[IdKey]) -> list[tuple[Any, ...]]:
    """Every identity of `profile_ids`, and the current owner of every one of `keys`."""
    table = Identity._meta.db_table
    if connection.vendor == "postgresql":
        with pg_cursor(parse_json=True) as cursor:
            # Two index lookups, not one OR: PostgreSQL plans the OR as a scan of the whole
            # table (measured: 60 ms at 200k identities, against 1.5 ms).
            cursor.execute(
                f"SELECT {_IDENTITY_COLUMNS} FROM {table} WHERE profile_id = ANY(%b) UNION "
                f"SELECT {_IDENTITY_COLUMNS} FROM {table} WHERE (kind, value) IN "
                "(SELECT * FROM unnest(%b::text[], %b::text[]))",
                [profile_ids, [k for k, _ in keys], [v for _, v in keys]],
            )
            return cursor.fetchall()
    marks = ", ".join(["%s"] * len(profile_ids)) or "NULL"
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT {_IDENTITY_COLUMNS} FROM {table} WHERE profile_id IN ({marks})"
            + (f" OR (kind, value) IN (VALUES {_values_sql(len(keys))})" if keys else ""),
            [*profile_ids, *(part for key in keys for part in key)],
        )
        convert = connection.ops.convert_datetimefield_value  # type: ignore[attr-defined]  # SQLite only
        return [
            (row[0], row[1], row[2], convert(row[3], None, connection), convert(row[4], None, connection), row[5],
             orjson.loads(row[6]) if isinstance(row[6], str) else row[6])
            for row in cursor.fetchall()
        ]  # fmt: skip


def _lock_view(keys: set[IdKey]) -> tuple[GraphView, dict[int, _ProfileState], dict[IdKey, tuple[int, datetime]]]:
    """Lock the live profiles owning `keys` and load their whole identity sets, in three
    queries: the owners, the locks, then the identities (which also re-read the owners).
    Re-reads when a concurrent merge or split moved an identifier while we waited."""
    ordered = sorted(keys)
    for _ in range(LOCK_ATTEMPTS):
        savepoint = transaction.savepoint()
        ids = sorted(set(_owners(keys).values()))
        # NO KEY UPDATE: the ids never change, so inserts that reference these profiles
        # (their foreign-key checks take KEY SHARE) are not blocked by the lock.
        profiles = list(Profile.objects.select_for_update(no_key=True).filter(id__in=ids).order_by("id"))
        rows = _graph_rows(ids, ordered)
        moved = any(row[5] not in ids for row in rows)
        if not moved and all(p.merged_into_id is None for p in profiles):
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
    view = GraphView({p.id: ProfileView(p.id, p.merge_count, tuple(held[p.id])) for p in profiles}, labels)
    return view, {p.id: _ProfileState(p) for p in profiles}, known


def _unresolved_ids(event_ids: list[int]) -> set[int]:
    if connection.vendor == "postgresql":
        with pg_cursor() as cursor:
            cursor.execute(f"SELECT id, profile_id FROM {Event._meta.db_table} WHERE id = ANY(%b)", [event_ids])
            return {row[0] for row in cursor.fetchall() if row[1] is None}
    return set(Event.objects.filter(id__in=event_ids, profile__isnull=True).values_list("id", flat=True))


def _resolve_chunk(
    facts: list[_EventFacts], rules: IdentityRules, result: ResolveResult, processed_at: datetime | None
) -> None:
    with transaction.atomic():
        commit_without_flush()  # all of it derives from the event log: see the function
        keys = _keys(facts)
        _lock_identifiers(keys)
        # Another worker (a sweep racing the original task) may have resolved some already.
        pending = _unresolved_ids([f.message.event_id for f in facts])
        facts = [f for f in facts if f.message.event_id in pending]
        if not facts:
            return
        view, states, known = _lock_view(keys)
        outcome = plan([f.message for f in facts], view, rules)
        _apply(outcome, facts, states, known, result, processed_at)


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
                 ("rule", "text"), ("profile_id", "bigint"), ("created_at", "timestamptz")],
        rows=[
            (d.event_id, by_event[d.event_id].message.message_id, d.key[0], d.key[1], d.rule,
             r(d.profile) if d.profile is not None else None, now)
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
    keys = [new_profile_key() for _ in outcome.new_profiles]
    ids = rows_insert(
        table=Profile._meta.db_table,
        columns=[("key", "text"), ("created_at", "timestamptz"), ("updated_at", "timestamptz"), ("traits", "jsonb"),
                 ("trait_meta", "jsonb"), ("merge_count", "int4")],
        rows=[(key, now, now, {}, {}, 0) for key in keys],
        returning="id",
    )  # fmt: skip
    created = [
        Profile(id=pid, key=key, created_at=now, updated_at=now, traits={}, trait_meta={}, merge_count=0)
        for pid, key in zip(ids, keys, strict=True)
    ]
    real = {ref: p.id for ref, p in zip(outcome.new_profiles, created, strict=True)}
    for p in created:
        states[p.id] = _ProfileState(p, dirty=True)
    return real


def _merge_profiles(
    outcome: Plan, states: dict[int, _ProfileState], by_event: dict[int, _EventFacts], now: datetime
) -> None:
    """Merged-away profiles: identities, events and older tombstones move to the final
    winner, traits merge (newest wins), and each step is recorded as a `Merge`."""
    if not outcome.merges:
        return
    for step in outcome.merges:
        profile_fold(kept=states[step.winner].profile, gone=states[step.loser].profile)
        states[step.winner].dirty = True
    for loser, winner in outcome.final_winner.items():
        profile_repoint(loser_id=loser, winner_id=winner, now=now)
        states.pop(loser, None)
    for profile_id, count in outcome.merge_counts.items():
        if profile_id in states:
            states[profile_id].profile.merge_count = count
    rows_insert(
        table=Merge._meta.db_table,
        columns=[("winner_id", "bigint"), ("loser_id", "bigint"), ("event_id", "bigint"), ("message_id", "text"),
                 ("reason", "text"), ("identifiers", "jsonb"), ("created_at", "timestamptz")],
        rows=[
            (s.winner, s.loser, s.event_id, by_event[s.event_id].message.message_id, "",
             [f"{k}:{v}" for k, v in s.identifiers], now)
            for s in outcome.merges
        ],
    )  # fmt: skip


def _insert_identities(outcome: Plan, r: Any, known: dict[IdKey, tuple[int, datetime]]) -> None:
    if not outcome.new_identities:
        return
    rows: list[tuple[Any, ...]] = [
        (n.key[0], n.key[1], r(n.profile), n.first_seen, outcome.seen[n.key][1], n.event_id, n.message_id,
         n.source_id, {})
        for n in outcome.new_identities
    ]  # fmt: skip
    ids = rows_insert(
        table=Identity._meta.db_table,
        columns=[("kind", "text"), ("value", "text"), ("profile_id", "bigint"), ("first_seen_at", "timestamptz"),
                 ("last_seen_at", "timestamptz"), ("first_event_id", "bigint"), ("first_message_id", "text"),
                 ("source_id", "int4"), ("separations", "jsonb")],
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
    first: dict[tuple[IdKey, IdKey], Any] = {}
    for link in outcome.links:
        first.setdefault((link.a, link.b), link)
    rows_insert(
        table=IdentityLink._meta.db_table,
        columns=[("a_id", "bigint"), ("b_id", "bigint"), ("first_event_id", "bigint"), ("first_message_id", "text"),
                 ("first_seen_at", "timestamptz")],
        rows=[
            (known[a][0], known[b][0], link.event_id, by_event[link.event_id].message.message_id, link.timestamp)
            for (a, b), link in first.items()
        ],
        skip_conflicts=True,
    )  # fmt: skip


def _assign_events(assignments: dict[int, int], processed_at: datetime | None) -> None:
    if processed_at is None:
        rows_update(table=Event._meta.db_table, columns=[("profile_id", "bigint")], rows=list(assignments.items()))
        return
    rows_update(
        table=Event._meta.db_table,
        columns=[("profile_id", "bigint"), ("processed_at", "timestamptz")],
        rows=[(event, profile, processed_at) for event, profile in assignments.items()],
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
        state = states[profile_id]
        p = state.profile
        if p.first_seen_at is None or lo < p.first_seen_at:
            p.first_seen_at, state.dirty = lo, True
        if p.last_seen_at is None or hi > p.last_seen_at:
            p.last_seen_at, state.dirty = hi, True
        if updates.get(profile_id):
            p.traits, p.trait_meta, _ = traits_apply_updates(p.traits, p.trait_meta, updates[profile_id])
            state.dirty = True
    dirty = [s.profile for s in states.values() if s.dirty]
    rows_update(
        table=Profile._meta.db_table,
        columns=[("first_seen_at", "timestamptz"), ("last_seen_at", "timestamptz"), ("traits", "jsonb"),
                 ("trait_meta", "jsonb"), ("merge_count", "int4"), ("updated_at", "timestamptz")],
        rows=[(p.id, p.first_seen_at, p.last_seen_at, p.traits, p.trait_meta, p.merge_count, now) for p in dirty],
    )  # fmt: skip
