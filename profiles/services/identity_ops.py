"""What staff do to the identity graph: split a wrong merge, remove an identifier, merge by
hand, rebuild everything from the event log. Each is audited (`IdentityAudit`: who, why,
what) in the same transaction as the change.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import networkx as nx
from django.contrib.auth.models import User
from django.db import OperationalError, connection, transaction
from django.utils import timezone

from profiles.identity.extract import EVENT_COLUMNS, event_message
from profiles.identity.planner import GraphView, Message, ProfileView, merge_violation, plan
from profiles.identity.rules import IdentityRules, IdKey
from profiles.models import Demotion, Event, Identity, IdentityAudit, IdentityLink, Merge, Profile, new_profile_key
from profiles.services.feed import Changes, feed_write
from profiles.services.graph import profile_fold, profile_repoint, profiles_recompute_from_events
from profiles.services.identity_settings import identity_rules
from profiles.traits import traits_changed_keys

Actor = User | None
# Rebuild writes in chunks of this many rows: a few MB of parameters per statement.
REBUILD_CHUNK = 5000


class IdentityOperationError(ValueError):
    """The operation was refused; the message says why, for the person who asked."""


def _lock_live(profile_ids: Sequence[int]) -> list[Profile]:
    profiles = list(Profile.objects.select_for_update().filter(id__in=sorted(set(profile_ids))).order_by("id"))
    if len(profiles) != len(set(profile_ids)):
        raise IdentityOperationError("Profile not found.")
    for p in profiles:
        if p.merged_into_id is not None:
            raise IdentityOperationError(f"{p.key} was merged into another profile; act on that one.")
    return profiles


def _audit(action: str, profile: Profile | None, actor: Actor, reason: str, **details: Any) -> IdentityAudit:
    return IdentityAudit.objects.create(
        action=action, profile=profile, actor=actor if actor and actor.pk else None, reason=reason, details=details
    )


def _require_reason(reason: str) -> str:
    if not reason or not reason.strip():
        raise IdentityOperationError("Say why: a reason is required and kept in the audit log.")
    return reason.strip()


def _event_key(rules: IdentityRules, held: set[IdKey], row: tuple[Any, ...]) -> IdKey | None:
    """The most trusted of an event's identifiers that `held` contains."""
    return next((k for k in event_message(row, rules).identifiers if k in held), None)


# --- Split ------------------------------------------------------------------------------


@dataclass(frozen=True)
class SplitResult:
    audit_id: int
    profile_ids: list[int]  # the original first, then the new ones
    events_moved: int


def profile_split(*, profile_id: int, identifiers: Sequence[IdKey], actor: Actor, reason: str) -> SplitResult:
    """Split `identifiers` off a profile.

    networkx recomputes the components of the profile's links without those crossing the
    cut; each component's links are then replayed in time order through the planner, so
    the limits apply again. The picked identifiers and the rest are put on two sides of
    this split (`Identity.separations`), which no later merge may bring together. Each
    resulting group is a profile; the original keeps the group of its oldest remaining
    identifier. Events follow their most trusted identifier; traits and
    seen times are recomputed from the events each profile now holds."""
    reason = _require_reason(reason)
    rules = identity_rules()
    now = timezone.now()
    with transaction.atomic():
        (profile,) = _lock_live([profile_id])
        idents = {(i.kind, i.value): i for i in Identity.objects.filter(profile=profile)}
        picked = set(map(tuple, identifiers))
        if not picked:
            raise IdentityOperationError("Pick at least one identifier to split off.")
        if missing := picked - idents.keys():
            raise IdentityOperationError(f"Not on this profile: {', '.join(f'{k}:{v}' for k, v in sorted(missing))}.")
        if picked == idents.keys():
            raise IdentityOperationError("Nothing would remain on the profile; pick fewer identifiers.")
        audit = _audit(IdentityAudit.Action.SPLIT, profile, actor, reason,
                       identifiers=[f"{k}:{v}" for k, v in sorted(picked)])  # fmt: skip

        labels: dict[IdKey, dict[int, int]] = {}
        for key, ident in idents.items():
            sides = {int(s): side for s, side in ident.separations.items()}
            sides[audit.id] = 1 if key in picked else 0
            ident.separations = {str(s): side for s, side in sides.items()}
            labels[key] = sides
        # networkx: the components of the profile's links once every link across the cut
        # is dropped. Then, per component, the limits are replayed in time order by the
        # planner (identifiers first, then links), which may split it further.
        by_id = {i.id: key for key, i in idents.items()}
        graph = nx.Graph()
        graph.add_nodes_from(idents)
        for a, b, at, link_id in IdentityLink.objects.filter(a_id__in=list(by_id), b_id__in=list(by_id)).values_list(
            "a_id", "b_id", "first_seen_at", "id"
        ):
            ka, kb = by_id[a], by_id[b]
            if (ka in picked) == (kb in picked):
                graph.add_edge(ka, kb, at=at, link_id=link_id)
        groups: list[set[IdKey]] = []
        for component in nx.connected_components(graph):
            replay = [(idents[k].first_seen_at, 0, Message(-idents[k].id, idents[k].first_seen_at, 0, "", (k,)))
                      for k in component]  # fmt: skip
            for ka, kb, data in graph.subgraph(component).edges(data=True):
                pair = tuple(sorted((ka, kb), key=rules.rank_key))
                replay.append((data["at"], 1, Message(-(10**12) - data["link_id"], data["at"], 0, "", pair)))
            replay.sort(key=lambda r: (r[0], r[1], r[2].event_id))
            local: dict[int, set[IdKey]] = defaultdict(set)
            for n in plan([m for _, _, m in replay], GraphView({}, labels), rules).new_identities:
                local[n.profile].add(n.key)
            groups.extend(local.values())

        oldest = min((i for k, i in idents.items() if k not in picked), key=lambda i: (i.first_seen_at, i.id))
        kept = next(g for g in groups if (oldest.kind, oldest.value) in g)
        others = [g for g in groups if g is not kept]
        created = Profile.objects.bulk_create([Profile(key=new_profile_key(), created_at=now) for _ in others])
        group_of = {key: profile.id for key in kept}
        group_of |= {key: p.id for g, p in zip(others, created, strict=True) for key in g}
        for key, ident in idents.items():
            ident.profile_id = group_of[key]
        Identity.objects.bulk_update(list(idents.values()), ["profile_id", "separations"])

        moves = _reassign_events(profile.id, set(idents), group_of, rules)
        before = dict(profile.traits)
        profiles_recompute_from_events(profiles=[profile, *created], now=now)
        audit.details |= {"profiles": [profile.key, *(p.key for p in created)], "events_moved": moves}
        audit.save(update_fields=["details"])
        changes = Changes("split")
        original = changes.of(profile.id)
        original.split.update(p.id for p in created)
        original.removed.update(f"{k}:{v}" for k, v in idents if group_of[(k, v)] != profile.id)
        original.traits.update(traits_changed_keys(before, profile.traits))
        for p in created:
            side = changes.of(p.id)
            side.split_from = profile.id
            side.identifiers.update(f"{k}:{v}" for k, v in idents if group_of[(k, v)] == p.id)
            side.traits.update(p.traits)
        feed_write(changes.values(), at=now)
    return SplitResult(audit.id, [profile.id, *(p.id for p in created)], moves)


def _reassign_events(profile_id: int, held: set[IdKey], group_of: dict[IdKey, int], rules: IdentityRules) -> int:
    rows = Event.objects.filter(profile_id=profile_id).values_list(*EVENT_COLUMNS)
    moves: dict[int, list[int]] = defaultdict(list)
    for row in rows.iterator(chunk_size=REBUILD_CHUNK):
        key = _event_key(rules, held, row)
        target = group_of[key] if key else profile_id
        if target != profile_id:
            moves[target].append(row[0])
    for target, event_ids in moves.items():
        for start in range(0, len(event_ids), REBUILD_CHUNK):
            Event.objects.filter(id__in=event_ids[start : start + REBUILD_CHUNK]).update(profile_id=target)
    return sum(len(v) for v in moves.values())


# --- Remove an identifier -------------------------------------------------------------------


def identity_remove(*, profile_id: int, kind: str, value: str, actor: Actor, reason: str) -> None:
    """Remove an identifier from a profile (Segment's delete-external-id). Its links go
    with it; the profile's events stay. A later message carrying it attaches it again.
    Refused for the profile's only identifier and for its last user_id, as in Segment."""
    reason = _require_reason(reason)
    with transaction.atomic():
        (profile,) = _lock_live([profile_id])
        identity = Identity.objects.filter(profile=profile, kind=kind, value=value).first()
        if identity is None:
            raise IdentityOperationError(f"{kind}:{value} is not on this profile.")
        held = list(Identity.objects.filter(profile=profile).values_list("kind", flat=True))
        if len(held) == 1:
            raise IdentityOperationError("It is the profile's only identifier.")
        if kind == "user_id" and held.count("user_id") == 1:
            raise IdentityOperationError("It is the profile's last user_id.")
        identity.delete()
        _audit(IdentityAudit.Action.REMOVE_IDENTIFIER, profile, actor, reason, identifier=f"{kind}:{value}")
        changes = Changes("remove_identifier")
        changes.of(profile.id).removed.add(f"{kind}:{value}")
        feed_write(changes.values())


# --- Merge by hand -------------------------------------------------------------------------


def profile_merge(*, profile_ids: Sequence[int], actor: Actor, reason: str, override: bool = False) -> Profile:
    """Merge profiles into the oldest, as resolution would. Refused when the result would
    break a limit, a cap or a split, unless `override` (then the broken split's sides are
    forgotten on these identifiers, since a person decided they are one)."""
    reason = _require_reason(reason)
    if len(set(profile_ids)) < 2:
        raise IdentityOperationError("Pick two or more different profiles.")
    rules = identity_rules()
    now = timezone.now()
    with transaction.atomic():
        profiles = _lock_live(profile_ids)
        idents = list(Identity.objects.filter(profile__in=profiles))
        held: dict[int, list[tuple[IdKey, datetime]]] = defaultdict(list)
        labels = {}
        for i in idents:
            held[i.profile_id].append(((i.kind, i.value), i.first_seen_at))
            if i.separations:
                labels[(i.kind, i.value)] = {int(s): side for s, side in i.separations.items()}
        view = GraphView({p.id: ProfileView(p.id, p.merge_count, tuple(held[p.id])) for p in profiles}, labels)
        broken = merge_violation(view, rules, now)
        if broken and not override:
            raise IdentityOperationError(f"Refused: merging would break {broken}. A staff override can force it.")
        if broken and broken.startswith("kept apart by split"):
            split = broken.rsplit(" ", 1)[-1]
            for i in idents:
                if i.separations.pop(split, None) is not None:
                    i.save(update_fields=["separations"])
        winner, *losers = profiles
        before = dict(winner.traits)
        changes = Changes("manual_merge")
        gained = changes.of(winner.id)
        for i in idents:
            if i.profile_id != winner.id:
                gained.identifiers.add(f"{i.kind}:{i.value}")
        for loser in losers:
            gained.merged.add(loser.id)
            changes.of(loser.id).merged_into = winner.id
            profile_fold(kept=winner, gone=loser)
            profile_repoint(loser_id=loser.id, winner_id=winner.id, now=now)
            winner.merge_count += loser.merge_count + 1
            Merge.objects.create(winner=winner, loser=loser, actor=actor if actor and actor.pk else None,
                                 reason=reason, created_at=now)  # fmt: skip
        winner.save(update_fields=["traits", "trait_meta", "first_seen_at", "last_seen_at", "merge_count",
                                   "updated_at"])  # fmt: skip
        _audit(IdentityAudit.Action.MANUAL_MERGE, winner, actor, reason, merged=[p.key for p in losers],
               override=bool(broken and override), broken_rule=broken or "")  # fmt: skip
        gained.traits.update(traits_changed_keys(before, winner.traits))
        feed_write(changes.values(), at=now)
    return winner


# --- Rebuild -------------------------------------------------------------------------------


# How long a rebuild waits for the identity tables: resolution's transactions hold them for
# ~0.1-1 s each, and stop taking new ones while the rebuild waits in the lock queue.
REBUILD_LOCK_TIMEOUT = timedelta(seconds=30)


class RebuildLocked(Exception):
    """The rebuild could not lock the identity tables in time; nothing was changed."""


@dataclass(frozen=True)
class RebuildResult:
    events: int
    profiles: int
    identities: int
    demotions: int


def identities_rebuild(
    *,
    actor: Actor = None,
    reason: str = "rebuild",
    progress: Callable[[int], None] | None = None,
    lock_timeout: timedelta = REBUILD_LOCK_TIMEOUT,
) -> RebuildResult:
    """Replay the whole event log in timestamp order into a fresh graph.

    Identities, links and demotions are rebuilt; splits are kept (their sides are applied
    to the replay). Old profiles become tombstones pointing at the new profile holding most
    of their events, so every old `use_` id still resolves. Blocks resolution while it runs
    (it locks the identity tables: resolution's tasks wait up to their lock timeout, then
    retry; no event is lost). Waits at most `lock_timeout` for that lock, else raises
    `RebuildLocked` and changes nothing. No statement timeout: the replay takes as long as
    the log needs. `progress(n)` is called as events are read."""
    rules = identity_rules()
    now = timezone.now()
    with transaction.atomic():
        if connection.vendor == "postgresql":
            tables = ", ".join(m._meta.db_table for m in (Profile, Identity, IdentityLink, Demotion))
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT set_config('lock_timeout', %s, true), set_config('statement_timeout', '0', true)",
                    [str(max(1, int(lock_timeout.total_seconds() * 1000)))],
                )
                try:
                    cursor.execute(f"LOCK TABLE {tables} IN EXCLUSIVE MODE")
                except OperationalError as exc:
                    raise RebuildLocked(
                        f"The identity tables stayed locked for {lock_timeout.total_seconds():g} s (a resolution "
                        "transaction or a staff action holds them); nothing was changed. Try again, or give a "
                        "longer --lock-timeout."
                    ) from exc
                cursor.execute("SELECT set_config('lock_timeout', '0', true)")
        labels = {
            (k, v): {int(s): side for s, side in sep.items()}
            for k, v, sep in Identity.objects.exclude(separations={}).values_list("kind", "value", "separations")
        }
        old_owner: dict[int, int | None] = {}

        def messages() -> Iterator[Message]:
            rows = Event.objects.order_by("timestamp", "id").values_list(*EVENT_COLUMNS, "profile_id")
            for n, row in enumerate(rows.iterator(chunk_size=REBUILD_CHUNK), start=1):
                old_owner[row[0]] = row[-1]
                if progress and n % 1000 == 0:
                    progress(1000)
                yield event_message(row, rules)
            if progress:
                progress(len(old_owner) % 1000)

        result = plan(messages(), GraphView({}, labels), rules)

        IdentityLink.objects.all().delete()
        Identity.objects.all().delete()
        Demotion.objects.all().delete()
        Event.objects.update(profile_id=None)
        old_live = list(Profile.objects.filter(merged_into__isnull=True).values_list("id", flat=True))

        created = Profile.objects.bulk_create(
            [Profile(key=new_profile_key(), created_at=now) for _ in result.new_profiles], batch_size=REBUILD_CHUNK
        )
        real = {ref: p.id for ref, p in zip(result.new_profiles, created, strict=True)}
        Identity.objects.bulk_create(
            [Identity(kind=n.key[0], value=n.key[1], profile_id=real[n.profile], first_seen_at=n.first_seen,
                      last_seen_at=result.seen[n.key][1], first_event_id=n.event_id, first_message_id=n.message_id,
                      source_id=n.source_id,
                      separations={str(s): side for s, side in labels.get(n.key, {}).items()})
             for n in result.new_identities],
            batch_size=REBUILD_CHUNK,
        )  # fmt: skip
        ids = dict(
            ((k, v), pk) for k, v, pk in Identity.objects.values_list("kind", "value", "id").iterator(chunk_size=10000)
        )
        IdentityLink.objects.bulk_create(
            [IdentityLink(a_id=ids[link.a], b_id=ids[link.b], first_event_id=link.event_id,
                          first_seen_at=link.timestamp)
             for link in result.links],
            batch_size=REBUILD_CHUNK, ignore_conflicts=True,
        )  # fmt: skip
        Demotion.objects.bulk_create(
            [Demotion(event_id=d.event_id, kind=d.key[0], value=d.key[1], rule=d.rule,
                      profile_id=real.get(d.profile) if d.profile is not None else None, created_at=now)
             for d in result.demotions],
            batch_size=REBUILD_CHUNK, ignore_conflicts=True,
        )  # fmt: skip
        by_profile: dict[int, list[int]] = defaultdict(list)
        for event_id, ref in result.assignments.items():
            by_profile[real[ref]].append(event_id)
        for profile_id, event_ids in by_profile.items():
            for start in range(0, len(event_ids), REBUILD_CHUNK):
                Event.objects.filter(id__in=event_ids[start : start + REBUILD_CHUNK]).update(profile_id=profile_id)
        profiles_recompute_from_events(profiles=created, now=now)

        heirs: dict[int, Counter[int]] = defaultdict(Counter)
        for event_id, old in old_owner.items():
            if old is not None and event_id in result.assignments:
                heirs[old][real[result.assignments[event_id]]] += 1
        heir_of: dict[int, int] = {}
        for old in old_live:
            if heirs.get(old):
                heir = heir_of[old] = heirs[old].most_common(1)[0][0]
                Profile.objects.filter(id=old).update(merged_into_id=heir, updated_at=now)
                Profile.objects.filter(merged_into_id=old).update(merged_into_id=heir)
        outcome = RebuildResult(len(old_owner), len(created), len(result.new_identities), len(result.demotions))
        _audit(IdentityAudit.Action.REBUILD, None, actor, reason, **outcome.__dict__)
        # Every profile changed: the new ones (rebuilt from the log), the old ones (now
        # tombstones to their heirs, or emptied when they kept no event).
        changes = Changes("rebuild")
        for p in created:
            fresh = changes.of(p.id)
            fresh.rebuilt = True
            fresh.traits.update(p.traits)
        for old in old_live:
            gone = changes.of(old)
            gone.rebuilt = True
            gone.merged_into = heir_of.get(old)
        feed_write(changes.values(), at=now)
    return outcome
