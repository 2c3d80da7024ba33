"""Identity resolution: the pipeline's step that takes accepted batches of messages, resolves
each message to a profile, and writes it to the event log.

`batches_resolve` works one transaction per chunk of batches. Each transaction claims its
batches (row locks that other workers skip; with a backlog, also the oldest batches after
them), drops messages the log already holds, extracts identifiers, locks the identifiers no
profile owns yet (advisory locks, in hash order) and the profiles that own the others (row
locks, in id order), loads the graph view, runs the pure planner, and writes the plan in
bulk: new profiles, merges (identities, events and tombstones re-pointed, traits merged),
new identities, links, demotions, the traits the messages set, and the messages themselves
with their profile; then it deletes the batches. Lock order is always batches,
identifiers, then profiles, each sorted, so concurrent workers neither deadlock nor create
two profiles for one person. A first pass does not wait for another transaction's
identifiers or profiles: the messages that touch one are put back as a new batch, and
resolved after the pass, waiting then.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import DatabaseError, InterfaceError, OperationalError, connection, transaction
from django.utils import timezone

from profiles.db import pg_cursor
from profiles.identity.extract import event_message
from profiles.identity.planner import GraphView, Message, Plan, ProfileView, plan
from profiles.identity.rules import IdentityRules, IdKey
from profiles.models import Demotion, EventBatch, Identity, IdentityLink, Merge, Profile, new_profile_key
from profiles.outbound import event_deliveries
from profiles.services.bulk import resolution_settings, rows_insert, rows_matching, rows_update
from profiles.services.events import (
    LogRow,
    batch_decode,
    batches_requeue,
    events_allocate_ids,
    events_stored,
    events_write,
)
from profiles.services.feed import Changes, feed_write
from profiles.services.graph import profile_fold, profiles_repoint
from profiles.services.identity_settings import identity_kinds_register, identity_rules
from profiles.traits import TraitUpdate, event_trait_updates, traits_apply_updates, traits_changed_keys

# Messages per transaction: a task's batches, and under load the backlog after them.
# Measured (in-process, 67k events): at 100 messages a transaction, resolution cost 175 µs
# of Python and 175 µs of PostgreSQL CPU a message; at 1,000, 92 and 90: most of a
# transaction's cost is fixed.
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


logger = logging.getLogger(__name__)


class ResolutionContention(DatabaseError):
    """The graph kept changing under concurrent merges; the task retries."""


class DuplicateInFlight(DatabaseError):
    """A message of the claimed batches is in the log: written by another transaction
    meanwhile (the same message sent twice, in two batches resolved at once), or before, when
    the log was not looked at first. Nothing of the transaction is kept; it is resolved
    again (or its task retries), and then finds the message in the log."""


@dataclass
class ResolveResult:
    changed_profile_ids: set[int] = field(default_factory=set)
    processed: int = 0  # messages taken from batches: written to the log, or duplicates
    resolved: int = 0
    unresolved: int = 0
    # (source id, hour received) -> messages the log already held
    duplicates: Counter[tuple[int, datetime]] = field(default_factory=Counter)
    # (source id, hour processed, code) -> what was stored but not used, for the ingest
    # debugger: identifiers of a kind past the cap of kinds messages may create.
    notices: Counter[tuple[int, datetime, str]] = field(default_factory=Counter)

    def add(self, other: ResolveResult) -> None:
        self.changed_profile_ids |= other.changed_profile_ids
        self.processed += other.processed
        self.resolved += other.resolved
        self.unresolved += other.unresolved
        self.duplicates += other.duplicates
        self.notices += other.notices


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
    initial_traits: dict[str, Any] = field(default_factory=dict)  # as locked: to tell which keys changed


@dataclass(frozen=True, slots=True)
class _EventFacts:
    message: Message
    type: str
    traits: Any
    context: Any
    name: str | None  # the feed's name for it: a track's event, Page Viewed, Screen Viewed; else None


def batches_resolve(*, batch_ids: Sequence[int], processed_at: datetime, backlog: bool = False) -> ResolveResult:
    """Resolve the messages of the given batches and write them to the event log, with
    `processed_at`. Idempotent: a batch is deleted in the transaction that writes its
    messages, so running it twice changes nothing. Returns the profiles it changed.

    Each transaction claims its batches (row locks, skipping rows another worker holds:
    that worker resolves them). With `backlog`, it also claims the oldest batches after
    the given ones, up to `CLAIM_BATCH` messages in all: under load a task resolves many
    ingest batches at once, which costs far less per message, and the tasks of the
    batches it took find nothing left to do."""
    result = ResolveResult()
    rules: list[IdentityRules] = []

    def current_rules() -> IdentityRules:  # read once, and only when there is work
        if not rules:
            rules.append(identity_rules())
        return rules[0]

    chunks: list[list[int]] = [[]]
    size = 0
    for batch_id, count in _pending(list(batch_ids), CLAIM_BATCH if backlog else 0):
        if chunks[-1] and size + count > CLAIM_BATCH:
            chunks.append([])
            size = 0
        chunks[-1].append(batch_id)
        size += count
    later: list[int] = []
    for chunk in chunks:
        if chunk:
            later += _resolve_isolating(chunk, current_rules, processed_at, result, wait=False)
    if later:
        # Messages put back because another transaction held one of their identifiers or
        # profiles: it has committed by now, or soon will. This time, wait for it.
        _resolve_isolating(later, current_rules, processed_at, result, wait=True)
    return result


# Errors a retry can cure (a lost connection, a deadlock victim, a graph that moved, a
# message another worker wrote meanwhile): they fail the task, which Celery retries.
# Anything else is about the batch itself.
TRANSIENT_ERRORS = (OperationalError, InterfaceError, ResolutionContention, DuplicateInFlight)


def _resolve_isolating(
    batch_ids: list[int],
    rules: Callable[[], IdentityRules],
    processed_at: datetime,
    result: ResolveResult,
    *,
    wait: bool,
) -> list[int]:
    """`_resolve`, where a batch that fails for a reason other than a transient one fails
    alone: the chunk is resolved again batch by batch, and each batch that still fails
    gets its failure recorded (`batch_failed`) while the others are written. Returns the
    ids of batches put back for later."""
    try:
        done, requeued = _resolve(batch_ids, rules, processed_at, wait=wait)
    except TRANSIENT_ERRORS:
        raise
    except Exception as exc:  # any other failure is the batch's: isolate it, record it, never drop it
        if len(batch_ids) == 1:
            logger.exception("Batch %d failed to resolve.", batch_ids[0])
            batch_failed(batch_id=batch_ids[0], error=exc)
            return []
        return [i for batch_id in batch_ids for i in _resolve_isolating([batch_id], rules, processed_at, result,
                                                                         wait=wait)]  # fmt: skip
    result.add(done)
    return requeued


def batch_failed(*, batch_id: int, error: BaseException) -> None:
    """Count a failed attempt at a batch, with its error; past `CDP_BATCH_MAX_ATTEMPTS` it
    is parked: the pipeline and the sweep leave it until an operator retries it."""
    now, limit = timezone.now(), settings.CDP_BATCH_MAX_ATTEMPTS
    text = f"{type(error).__name__}: {error}"[:2000]
    with transaction.atomic():
        batch = EventBatch.objects.select_for_update().filter(pk=batch_id).first()
        if batch is None:
            return
        batch.attempts += 1
        batch.last_error = text
        if batch.attempts >= limit:
            batch.parked_at = now
        batch.save(update_fields=["attempts", "last_error", "parked_at"])


# Whether to look messages up in the log before writing them. Normally not: a message the
# log holds is rare (a client resending a batch it thinks lost), and looking every message
# up cost 8% of resolution's PostgreSQL time (random reads of the (source, messageId)
# index). The write finds it anyway (a conflict), and the chunk is then resolved again with
# the look-up, which stays on for a while: a client that resends once often resends more.
CHECK_LOG_AFTER_A_DUPLICATE = timedelta(minutes=5)
_check_log_until = 0.0


def _resolve(
    batch_ids: list[int], rules: Callable[[], IdentityRules], processed_at: datetime, *, wait: bool
) -> tuple[ResolveResult, list[int]]:
    global _check_log_until
    if time.monotonic() >= _check_log_until:
        try:
            return _resolve_chunk(batch_ids, rules, processed_at, check_log=False, wait=wait)
        except DuplicateInFlight:
            pass  # rolled back whole: resolved again below, looking the messages up first
    result, requeued = _resolve_chunk(batch_ids, rules, processed_at, check_log=True, wait=wait)
    if result.duplicates:
        _check_log_until = time.monotonic() + CHECK_LOG_AFTER_A_DUPLICATE.total_seconds()
    return result, requeued


_BATCHES = EventBatch._meta.db_table
# Which of the given batches, and of the batches after `start`, are still waiting (a batch
# is deleted when its messages are written), with their sizes: primary-key reads.
_PENDING_SQL = (
    f"SELECT id, size FROM {_BATCHES} WHERE id = ANY(%b) AND parked_at IS NULL "
    f"UNION ALL (SELECT id, size FROM {_BATCHES} WHERE id > %b AND parked_at IS NULL ORDER BY id LIMIT %b)"
)
# The claim: a row lock on each, skipping rows another transaction holds (it is resolving
# them).
_CLAIM_SQL = (
    f"SELECT id, source_id, received_at, payload FROM {_BATCHES} WHERE id = ANY(%b) AND parked_at IS NULL "
    "ORDER BY id FOR UPDATE SKIP LOCKED"
)
# Where this process's next backlog search starts: past every batch it has claimed or
# found gone. Only a hint (another worker's claims are found gone, a restart starts again
# from the given batches), it keeps a worker from re-reading what earlier claims took:
# under load, claims run ahead of the tasks that name the batches.
_frontier = 0
# Every this often, a backlog search starts at the oldest waiting batch instead, behind the
# task's own batches and the frontier: a batch whose task was lost (with a worker killed
# whole, or prefetched when the broker restarted) or never published (owed by a web
# process that died) is then taken within seconds while traffic flows, not by the sweep
# minutes later. Its cost: one such read, of batches mostly held by other workers, every
# 5 s per process. Measured (bench/chaos.py): the catch-up after a 20 s Redis outage fell
# from 103 s (waiting for the sweep) to LOOK_BEHIND_MEASURED.
LOOK_BEHIND_EVERY = 5.0
_looked_behind = 0.0


def _pending(batch_ids: list[int], backlog: int) -> list[tuple[int, int]]:
    """`(id, size)` of the given batches still waiting, then of waiting batches after them
    (the oldest past this process's frontier; every LOOK_BEHIND_EVERY, the oldest of all)
    holding up to `backlog` messages beyond the given ones. Read before any transaction: a
    task whose batch another already took costs this one read."""
    global _frontier, _looked_behind
    last = max(batch_ids, default=0)
    start = max(last, _frontier)
    if backlog and time.monotonic() - _looked_behind >= LOOK_BEHIND_EVERY:
        _looked_behind = time.monotonic()
        start = 0
    if connection.vendor == "postgresql":
        with pg_cursor(binary=True) as cursor:
            cursor.execute(_PENDING_SQL, [batch_ids, start, 64 if backlog else 0])
            found = cursor.fetchall()
    else:
        waiting = EventBatch.objects.filter(parked_at__isnull=True).order_by("id").values_list("id", "size")
        found = list(waiting.filter(id__in=batch_ids))
        if backlog:
            found += waiting.filter(id__gt=start)[:64]
    own = set(batch_ids)
    wanted = sorted({row for row in found if row[0] in own})  # a look behind finds them twice
    after = sorted(row for row in found if row[0] not in own)
    if backlog and not after:  # nothing waits past the frontier: it may be stale (a database restored)
        _frontier = last
    room = backlog - sum(size for _, size in wanted)
    for batch_id, size in after:
        if size > room:
            break
        wanted.append((batch_id, size))
        room -= size
        _frontier = max(_frontier, batch_id)
    return wanted


def _claim(batch_ids: list[int]) -> list[tuple[int, list[LogRow]]]:
    """The batches of `batch_ids` this transaction takes (those no other transaction holds),
    in id order, each with its messages."""
    if connection.vendor == "postgresql":
        with pg_cursor(binary=True) as cursor:
            cursor.execute(_CLAIM_SQL, [batch_ids])
            rows = cursor.fetchall()
    else:  # SQLite: IMMEDIATE transactions already run one writer at a time
        batches = EventBatch.objects.filter(id__in=batch_ids, parked_at__isnull=True).order_by("id")
        rows = list(batches.values_list("id", "source_id", "received_at", "payload"))
    return [
        (batch_id, batch_decode(bytes(payload), source_id=source_id, received_at=received_at))
        for batch_id, source_id, received_at, payload in rows
    ]


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


def _lock_identifiers(new: set[IdKey], *, wait: bool) -> set[IdKey]:
    """Advisory locks on the identifiers no profile owns yet, so two workers never both
    create one (identifiers already stored are guarded by their profile's row lock, taken
    next). With `wait`, in one fixed order, waiting for each; without, an identifier
    another transaction holds (it is creating it) is not waited for but returned, and the
    caller leaves its messages for later. Every resolving transaction holds one lock
    shared; one with too many new identifiers takes it exclusively instead, and waits for
    the others. SQLite needs none: its IMMEDIATE transactions run one writer at a time."""
    if connection.vendor != "postgresql":
        return set()
    keys_of: dict[int, list[IdKey]] = defaultdict(list)
    for key in new:
        keys_of[_lock_hash(key)].append(key)
    hashes = sorted(keys_of)
    with connection.cursor() as cursor:
        if len(hashes) > MAX_IDENTIFIER_LOCKS:
            cursor.execute("SELECT pg_advisory_xact_lock(%s, %s)", _ALL_IDENTIFIERS)
            return set()
        cursor.execute("SELECT pg_advisory_xact_lock_shared(%s, %s)", _ALL_IDENTIFIERS)
        if not hashes:
            return set()
        if wait:
            cursor.execute("SELECT count(pg_advisory_xact_lock(k)) FROM unnest(%s::bigint[]) AS k", [hashes])
            return set()
        cursor.execute("SELECT k FROM unnest(%s::bigint[]) AS k WHERE NOT pg_try_advisory_xact_lock(k)", [hashes])
        return {key for (h,) in cursor.fetchall() for key in keys_of[h]}


def _owners(keys: Iterable[IdKey]) -> dict[IdKey, int]:
    """The profile that owns each of `keys` that is stored."""
    rows = rows_matching(
        table=Identity._meta.db_table,
        select=("kind", "value", "profile_id"),
        pair=(("kind", "text"), ("value", "text")),
        keys=sorted(keys),
    )
    return {(kind, value): profile_id for kind, value, profile_id in rows}


_PROFILE_COLUMNS = ("id", "merged_into_id", "merge_count", "first_seen_at", "last_seen_at", "traits", "trait_meta")
_IDENTITY_COLUMNS = ("id", "kind", "value", "first_seen_at", "last_seen_at", "profile_id", "separations")


def _lock_profiles(ids: list[int], *, wait: bool) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """Lock the profiles `ids` (in id order) and read them with all their identities.
    Unless `wait`, a profile another transaction holds is skipped (left out)."""
    if connection.vendor != "postgresql":
        profiles = list(Profile.objects.filter(id__in=ids).order_by("id").values_list(*_PROFILE_COLUMNS))
        return profiles, list(Identity.objects.filter(profile_id__in=ids).values_list(*_IDENTITY_COLUMNS))
    with pg_cursor(parse_json=True, binary=True) as cursor:
        # NO KEY UPDATE: the ids never change, so inserts that reference these profiles
        # (their foreign-key checks take KEY SHARE) are not blocked by the lock.
        cursor.execute(
            f"SELECT {', '.join(_PROFILE_COLUMNS)} FROM {Profile._meta.db_table} WHERE id = ANY(%b) "
            f"ORDER BY id FOR NO KEY UPDATE{'' if wait else ' SKIP LOCKED'}",
            [ids],
        )
        profiles = cursor.fetchall()
        cursor.execute(
            f"SELECT {', '.join(_IDENTITY_COLUMNS)} FROM {Identity._meta.db_table} WHERE profile_id = ANY(%b)",
            [[row[0] for row in profiles]],
        )
        return profiles, cursor.fetchall()


def _lock_view(
    keys: set[IdKey], owners: dict[IdKey, int], *, wait: bool
) -> tuple[GraphView, dict[int, _ProfileState], dict[IdKey, tuple[int, datetime]], set[IdKey]]:
    """Lock the live profiles owning `keys` (`owners`, as read under the identifier locks)
    and load their whole identity sets. Re-reads when a concurrent merge, split or delete
    moved an identifier meanwhile: a profile gone or merged away, or an owner that no
    longer holds the identifier. Unless `wait`, profiles another transaction holds are
    left out: returns the keys they own (or owned, if one was just deleted), whose
    messages the caller leaves for later."""
    for attempt in range(LOCK_ATTEMPTS):
        if attempt:
            owners = _owners(keys)
        ids = sorted(set(owners.values()))
        savepoint = transaction.savepoint()
        profiles, rows = _lock_profiles(ids, wait=wait)
        locked = {row[0] for row in profiles}
        holder = {(kind, value): profile_id for _, kind, value, _, _, profile_id, _ in rows}
        if (
            (len(profiles) == len(ids) or not wait)
            and all(row[1] is None for row in profiles)
            and all(holder.get(key) == profile_id for key, profile_id in owners.items() if profile_id in locked)
        ):
            transaction.savepoint_commit(savepoint)
            break
        transaction.savepoint_rollback(savepoint)
    else:
        raise ResolutionContention("the identity graph kept changing under concurrent merges")
    busy = {key for key, profile_id in owners.items() if profile_id not in locked}
    held: dict[int, list[tuple[IdKey, datetime]]] = defaultdict(list)
    known: dict[IdKey, tuple[int, datetime]] = {}
    labels: dict[IdKey, dict[int, int]] = {}
    for identity_id, kind, value, first_seen, last_seen, profile_id, separations in rows:
        held[profile_id].append(((kind, value), first_seen))
        known[(kind, value)] = (identity_id, last_seen)
        if separations:
            labels[(kind, value)] = {int(split): side for split, side in separations.items()}
    states = {
        pid: _ProfileState(pid, merges, first, last, traits, meta, initial_traits=traits)
        for pid, _, merges, first, last, traits, meta in profiles
    }
    view = GraphView({pid: ProfileView(pid, s.merge_count, tuple(held[pid])) for pid, s in states.items()}, labels)
    return view, states, known, busy


def _hour(at: datetime) -> datetime:
    return at.replace(minute=0, second=0, microsecond=0)


def _resolve_chunk(
    batch_ids: list[int], rules: Callable[[], IdentityRules], processed_at: datetime, *, check_log: bool, wait: bool
) -> tuple[ResolveResult, list[int]]:
    """One transaction. Raises `DuplicateInFlight` when a message was in the log already
    (unless `check_log` looked, then: written meanwhile by another transaction). Unless
    `wait`, the messages that carry an identifier another transaction is creating, or one
    of a profile it holds, are put back as new batches, whose ids it returns."""
    result = ResolveResult()
    requeued: list[int] = []
    with transaction.atomic():
        resolution_settings()
        claimed = _claim(batch_ids)
        if not claimed:
            return result, requeued
        # Each message once: the first of its (source, messageId), unless the log has it.
        fresh: dict[tuple[int, str], LogRow] = {}
        for _, messages in claimed:
            for row in messages:
                key = (row[0], row[1])
                if key in fresh:
                    result.duplicates[(row[0], _hour(row[12]))] += 1
                else:
                    fresh[key] = row
        for key in events_stored(fresh) if check_log else ():
            row = fresh.pop(key)
            result.duplicates[(row[0], _hour(row[12]))] += 1
        rows = [(event_id, *row) for event_id, row in zip(events_allocate_ids(len(fresh)), fresh.values(), strict=True)]
        facts = [
            # EVENT_COLUMNS: id, timestamp, source, messageId, type, userId, anonymousId,
            # previousId, traits, context, properties, integrations.
            _EventFacts(
                event_message((r[0], r[10], r[1], r[2], r[3], r[6], r[7], r[9], r[15], r[16], r[14], r[17]), rules()),
                r[3], r[15], r[16], feed_event_name(r[3], r[4]),
            )
            for r in rows
        ]  # fmt: skip
        assignments: dict[int, int] = {}
        changes = Changes("resolution")
        if facts:
            refused = identity_kinds_register(kinds={k for f in facts for k, _ in f.message.identifiers}, rules=rules())
            if refused:
                facts = _without_kinds(facts, refused, result.notices, _hour(processed_at))
            keys = _keys(facts)
            owners = _owners(keys)
            new = keys - owners.keys()
            busy = _lock_identifiers(new, wait=wait)
            owners |= _owners(new - busy)  # stored meanwhile by a worker that held their locks
            view, states, known, busy_owned = _lock_view(keys - busy, owners, wait=wait)
            if busy := busy | busy_owned:
                # Another transaction is creating these identifiers or changing their
                # profiles, and would make us wait until it commits: resolve the other
                # messages now, and these after it (the view holds no profile of theirs).
                later = {f.message.event_id for f in facts if not _keys([f]).isdisjoint(busy)}
                requeued = batches_requeue([r[1:] for r in rows if r[0] in later])
                rows = [r for r in rows if r[0] not in later]
                facts = [f for f in facts if f.message.event_id not in later]
                result.processed -= len(later)
            outcome = plan([f.message for f in facts], view, rules())
            assignments = _apply(outcome, facts, states, known, result, view, changes)
        # A backlog claim can take a batch accepted after the task began: an event is never
        # stamped processed before it was received.
        processed_at = max([processed_at, *(r[13] for r in rows)])
        written = events_write(rows=[(*r, assignments.get(r[0])) for r in rows], processed_at=processed_at)
        if written != len(rows):
            raise DuplicateInFlight(f"{len(rows) - written} of these messages are in the log already")
        event_deliveries(rows=rows, assignments=assignments)  # webhooks that take a source's events
        EventBatch.objects.filter(id__in=[batch_id for batch_id, _ in claimed]).delete()
        feed_write(changes.values(), at=processed_at)  # last: it holds the feed lock until the commit
        result.processed += sum(len(messages) for _, messages in claimed)
    return result, requeued


# The notice code of identifiers not used because their kind is past the cap.
KIND_CAP_NOTICE = "identity_kind_cap"


def _without_kinds(
    facts: list[_EventFacts], refused: set[str], notices: Counter[tuple[int, datetime, str]], hour: datetime
) -> list[_EventFacts]:
    """The messages without identifiers of `refused` kinds (they stay in the stored event,
    only matching ignores them), each one counted for the debugger."""
    kept = []
    for f in facts:
        identifiers = tuple(key for key in f.message.identifiers if key[0] not in refused)
        if len(identifiers) != len(f.message.identifiers):
            notices[(f.message.source_id, hour, KIND_CAP_NOTICE)] += len(f.message.identifiers) - len(identifiers)
            f = dataclasses.replace(f, message=dataclasses.replace(f.message, identifiers=identifiers))
        kept.append(f)
    return kept


def _apply(
    outcome: Plan,
    facts: list[_EventFacts],
    states: dict[int, _ProfileState],
    known: dict[IdKey, tuple[int, datetime]],
    result: ResolveResult,
    view: GraphView,
    changes: Changes,
) -> dict[int, int]:
    """Write the plan; returns each resolved event's profile. Collects what changed per
    profile in `changes`, for the feed."""
    now = timezone.now()
    by_event = {f.message.event_id: f for f in facts}
    real = _create_profiles(outcome, states, now)

    def r(ref: int) -> int:
        return real.get(ref, ref)

    _merge_profiles(outcome, states, by_event, now)
    for loser, winner in outcome.final_winner.items():
        changes.of(loser).merged_into = winner
        gained = changes.of(winner)
        gained.merged.add(loser)
        held = view.profiles.get(loser)
        gained.identifiers.update(f"{k}:{v}" for (k, v), _ in (held.identities if held else ()))
    for n in outcome.new_identities:
        changes.of(r(n.profile)).identifiers.add(f"{n.key[0]}:{n.key[1]}")
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
    for event_id, profile_id in assignments.items():
        if (name := by_event[event_id].name) is not None:
            changes.of(profile_id).events[name] += 1
    _apply_traits_and_seen(assignments, by_event, states, now)
    for p in states.values():
        if p.traits is not p.initial_traits and (keys := traits_changed_keys(p.initial_traits, p.traits)):
            changes.of(p.id).traits.update(keys)
    result.changed_profile_ids.update(assignments.values())
    result.resolved += len(assignments)
    result.unresolved += len(outcome.unresolved)
    return assignments


def feed_event_name(type_: str, event: str | None) -> str | None:
    """An event's name as computed traits and audiences match it (Segment's: a page call is
    `Page Viewed`, a screen call `Screen Viewed`); None for other calls."""
    if type_ == "track":
        return event
    return {"page": "Page Viewed", "screen": "Screen Viewed"}.get(type_)


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
