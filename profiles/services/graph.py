"""Writes shared by automatic resolution and the staff operations on the identity graph."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any, Protocol

from django.db import connection
from django.db.models import Q

from profiles.db import pg_cursor
from profiles.models import Event, Identity, Profile
from profiles.traits import TraitUpdate, event_trait_updates, traits_apply_updates, traits_merge


class Folded(Protocol):
    """What folding reads and writes: a `Profile`, or resolution's lighter copy of one."""

    traits: dict[str, Any]
    trait_meta: dict[str, Any]
    first_seen_at: datetime | None
    last_seen_at: datetime | None


def profile_fold(*, kept: Folded, gone: Folded) -> None:
    """Fold `gone`'s traits (newest wins) and seen times into `kept`, in memory."""
    kept.traits, kept.trait_meta = traits_merge((kept.traits, kept.trait_meta), (gone.traits, gone.trait_meta))
    for attr, pick in (("first_seen_at", min), ("last_seen_at", max)):
        values = [v for v in (getattr(kept, attr), getattr(gone, attr)) if v is not None]
        setattr(kept, attr, pick(values) if values else None)


def profile_repoint(*, loser_id: int, winner_id: int, now: datetime) -> None:
    """Move a merged-away profile's identities and events to the winner, and make it (and
    every older tombstone pointing at it) a tombstone pointing at the winner."""
    profiles_repoint(winners={loser_id: winner_id}, now=now)


_IDENTITIES, _EVENTS, _PROFILES = Identity._meta.db_table, Event._meta.db_table, Profile._meta.db_table
# Every merged-away profile of a batch in four statements (merges are common under load:
# three ORM updates per merge were 8% of resolution's time).
_REPOINT_SQL = (
    f"UPDATE {_IDENTITIES} SET profile_id = v.winner FROM unnest(%b::bigint[], %b::bigint[]) AS v(loser, winner) "
    f"WHERE {_IDENTITIES}.profile_id = v.loser",
    f"UPDATE {_EVENTS} SET profile_id = v.winner FROM unnest(%b::bigint[], %b::bigint[]) AS v(loser, winner) "
    f"WHERE {_EVENTS}.profile_id = v.loser",
    *(
        f"UPDATE {_PROFILES} SET merged_into_id = v.winner, updated_at = %b "
        f"FROM unnest(%b::bigint[], %b::bigint[]) AS v(loser, winner) WHERE {_PROFILES}.{column} = v.loser"
        for column in ("merged_into_id", "id")  # older tombstones first, then the losers themselves
    ),
)


def profiles_repoint(*, winners: Mapping[int, int], now: datetime) -> None:
    """`profile_repoint` for each merged-away profile (key) and its final winner (value)."""
    if not winners:
        return
    if connection.vendor != "postgresql":
        for loser_id, winner_id in winners.items():
            Identity.objects.filter(profile_id=loser_id).update(profile_id=winner_id)
            Event.objects.filter(profile_id=loser_id).update(profile_id=winner_id)
            Profile.objects.filter(Q(id=loser_id) | Q(merged_into_id=loser_id)).update(
                merged_into_id=winner_id, updated_at=now
            )
        return
    losers, finals = list(winners), list(winners.values())
    with pg_cursor() as cursor:
        cursor.execute(_REPOINT_SQL[0], [losers, finals])
        cursor.execute(_REPOINT_SQL[1], [losers, finals])
        cursor.execute(_REPOINT_SQL[2], [now, losers, finals])
        cursor.execute(_REPOINT_SQL[3], [now, losers, finals])


def profiles_recompute_from_events(*, profiles: Iterable[Profile], now: datetime) -> None:
    """Recompute traits and first/last seen of `profiles` from the events they now hold,
    replaying every trait update (newest wins, as in resolution), and save them."""
    by_id = {p.id: p for p in profiles}
    updates: defaultdict[int, list[TraitUpdate]] = defaultdict(list)
    seen: dict[int, tuple[datetime, datetime]] = {}
    rows = Event.objects.filter(profile_id__in=list(by_id)).values_list(
        "profile_id", "type", "traits", "context", "timestamp", "source_id", "message_id"
    )
    for profile_id, type_, traits, context, at, source_id, message_id in rows.iterator(chunk_size=5000):
        updates[profile_id] += event_trait_updates(
            type_=type_, traits=traits, context=context, at=at, source_id=source_id, message_id=message_id
        )
        lo, hi = seen.get(profile_id, (at, at))
        seen[profile_id] = (min(lo, at), max(hi, at))
    for profile_id, p in by_id.items():
        p.traits, p.trait_meta, _ = traits_apply_updates({}, {}, updates[profile_id])
        p.first_seen_at, p.last_seen_at = seen.get(profile_id, (None, None))
        p.updated_at = now
    Profile.objects.bulk_update(
        list(by_id.values()), ["traits", "trait_meta", "first_seen_at", "last_seen_at", "updated_at"], batch_size=1000
    )
