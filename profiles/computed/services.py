"""Computed traits: define them, and keep their values current.

- In real time: `computed_traits_consume` is the change feed's `computed_traits` consumer. For
  the profiles a batch of changes touched, it recomputes the definitions that depend on what
  changed (new events of their names; everything after a merge, a split or a rebuild).
- As time passes: `computed_traits_due` names the time-dependent definitions (a window, or
  decay) whose schedule has come; `computed_trait_compute(scope="schedule")` recomputes the
  profiles whose value can have changed (a window's edge passed one of their events; every
  value of a decaying score).
- In full: `computed_trait_compute(scope="full")`, when a definition is made or changed, and
  by `manage.py compute_traits`.

Every changed value is written with a `ComputedTraitChange` and a change-feed row (`computed`:
its key), in the transaction that changes it. Definitions are changed through these services
only, each change audited.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import DatabaseError, IntegrityError, connection, transaction
from django.db.models import F
from django.utils import timezone
from kombu.exceptions import OperationalError as BrokerError

from audit.services import audit_record
from profiles.computed.compiler import compile_candidates
from profiles.computed.compute import Diff, values_diff_apply
from profiles.computed.definitions import FIELDS, TraitDefinition, definition_json, definition_parse, key_check
from profiles.computed.models import ComputedTrait, ComputedTraitChange, ComputedTraitValue, EventName
from profiles.models import Profile
from profiles.query.dialects import dialect_named
from profiles.query.events import EVENTS
from profiles.query.filters import QueryError
from profiles.services.events import events_scoped
from profiles.services.feed import Change, Changes, FeedRow, feed_write

logger = logging.getLogger(__name__)

# Profiles recomputed per statement in a scoped run: a few thousand profiles' events are a
# few tens of milliseconds of work, and the id list stays a small parameter.
SCOPE_CHUNK = 2000
# Past this many changed values in one run, the feed gets one row saying "every profile may
# have changed these keys" (profile 0, `all`) instead of one row per profile: consumers then
# recompute in full, which is cheaper than millions of per-profile rows.
BROADCAST_OVER = 10_000
# A full recompute scans the event log: it gets its own statement timeout.
FULL_STATEMENT_TIMEOUT = "30min"


def definition_of(trait: ComputedTrait) -> TraitDefinition:
    return definition_parse({"key": trait.key, **trait.spec, "type": trait.type})


# --- Definitions ---------------------------------------------------------------------------------


def _validated(data: Mapping[str, Any], key: str) -> tuple[TraitDefinition, dict[str, Any]]:
    defn = definition_parse({**{f: data.get(f) for f in FIELDS}, "key": key})
    spec = {k: v for k, v in definition_json(defn).items() if k != "type"}
    return defn, spec


def _schedule(data: Mapping[str, Any], default: int) -> int:
    hours = data.get("schedule_hours", default)
    if not isinstance(hours, int) or isinstance(hours, bool) or not 1 <= hours <= 720:
        raise QueryError("schedule_hours", "Hours between scheduled recomputes: a whole number from 1 to 720.")
    return hours


def _custom_trait_holders(key: str) -> int:
    """How many profiles hold a custom trait named `key` (a computed key must not hide one)."""
    return Profile.objects.filter(merged_into__isnull=True, traits__has_key=key).count()


def computed_key_check(*, key: str) -> None:
    """Whether a new computed trait may take `key`: raises `QueryError` on `key` when one
    has it already, or when custom traits use it (the computed one would hide them)."""
    if ComputedTrait.objects.filter(key=key).exists():
        raise QueryError("key", f"A computed trait {key!r} exists already.")
    if holders := _custom_trait_holders(key):
        raise QueryError("key", f"{holders} profile(s) have a custom trait {key!r} (set by identify calls): a computed "
                                "trait of the same key would hide it. Choose another key.")  # fmt: skip


def computed_trait_create(*, data: Mapping[str, Any], actor: Any = None, reason: str = "") -> ComputedTrait:
    """Define a computed trait; its values are computed in full right after (a task). Raises
    `QueryError` naming the bad field: a bad definition, a key taken, or a key that custom
    traits already use."""
    key = key_check(data.get("key"))
    defn, spec = _validated(data, key)
    name = data.get("name") or key.replace("_", " ").capitalize()
    if not isinstance(name, str) or len(name) > 200:
        raise QueryError("name", "A name, at most 200 characters.")
    computed_key_check(key=key)
    with transaction.atomic():
        try:
            trait = ComputedTrait.objects.create(
                key=key, name=name, description=str(data.get("description") or ""), type=defn.type, spec=spec,
                schedule_hours=_schedule(data, 1), enabled=bool(data.get("enabled", True)),
                status=ComputedTrait.Status.COMPUTING if data.get("enabled", True) else ComputedTrait.Status.DISABLED,
                created_by=actor if hasattr(actor, "get_username") and actor.pk else None,
            )  # fmt: skip
        except IntegrityError:
            raise QueryError("key", f"A computed trait {key!r} exists already.") from None
        if getattr(actor, "pk", None):
            audit_record(actor=actor, action="add", target=trait, reason=reason or "created",
                         changes={"definition": [None, {"type": defn.type, **spec}]})  # fmt: skip
        if trait.enabled:
            transaction.on_commit(lambda: enqueue_compute(trait_id=trait.pk))
    return trait


def computed_trait_update(*, key: str, data: Mapping[str, Any], actor: Any = None, reason: str = "") -> ComputedTrait:
    """Change a definition (its key never changes); a changed definition is recomputed in
    full. Raises `ComputedTrait.DoesNotExist` or `QueryError`."""
    trait = ComputedTrait.objects.get(key=key)
    if "key" in data and data["key"] != key:
        raise QueryError("key", "A computed trait's key never changes: make a new trait instead.")
    merged = {"type": trait.type, **trait.spec, **{f: data[f] for f in FIELDS if f in data}}
    if data.get("type", trait.type) != trait.type:  # a new type: the old type's fields do not carry over
        merged = {f: data.get(f) for f in FIELDS}
    defn, spec = _validated(merged, key)
    before = {"type": trait.type, **trait.spec}
    changes: dict[str, Any] = {}
    with transaction.atomic():
        trait = ComputedTrait.objects.select_for_update().get(pk=trait.pk)
        for field in ("name", "description"):
            if field in data and data[field] != getattr(trait, field):
                changes[field] = [getattr(trait, field), data[field]]
                setattr(trait, field, str(data[field] or ""))
        if "schedule_hours" in data:
            trait.schedule_hours = _schedule(data, trait.schedule_hours)
        if "enabled" in data and bool(data["enabled"]) != trait.enabled:
            changes["enabled"] = [trait.enabled, bool(data["enabled"])]
            trait.enabled = bool(data["enabled"])
        redefined = {"type": defn.type, **spec} != before
        if redefined:
            changes["definition"] = [before, {"type": defn.type, **spec}]
            trait.type, trait.spec, trait.status = defn.type, spec, ComputedTrait.Status.COMPUTING
        if not trait.enabled:
            trait.status = ComputedTrait.Status.DISABLED
        elif trait.status == ComputedTrait.Status.DISABLED:
            trait.status, redefined = ComputedTrait.Status.COMPUTING, True
        trait.updated_at = timezone.now()
        trait.save()
        if getattr(actor, "pk", None) and changes:
            audit_record(actor=actor, action="change", target=trait, reason=reason or "changed", changes=changes)
        if redefined and trait.enabled:
            transaction.on_commit(lambda: enqueue_compute(trait_id=trait.pk))
    return trait


def computed_trait_delete(*, key: str, actor: Any = None, reason: str = "") -> None:
    """Delete a definition and its values; the floors above hear that the key changed for
    everyone (one broadcast feed row). Raises `ComputedTrait.DoesNotExist`."""
    with transaction.atomic():
        trait = ComputedTrait.objects.select_for_update().get(key=key)
        if getattr(actor, "pk", None):
            audit_record(actor=actor, action="delete", target=trait, reason=reason or "deleted",
                         changes={"definition": [{"type": trait.type, **trait.spec}, None]})  # fmt: skip
        ComputedTraitValue.objects.filter(trait=trait).delete()
        trait.delete()
        feed_write([Change(0, "computed_traits", computed={key}, everyone=True)])


def computed_trait_recompute(*, trait_id: int, actor: Any = None, reason: str = "") -> bool:
    """Queue a full recompute of an enabled trait now (after the commit), audited as
    `recompute`. False, and nothing queued, when the trait is gone or disabled."""
    with transaction.atomic():
        trait = ComputedTrait.objects.filter(pk=trait_id, enabled=True).first()
        if trait is None:
            return False
        if getattr(actor, "pk", None):
            audit_record(actor=actor, action="recompute", target=trait, reason=reason or "recomputed")
        transaction.on_commit(lambda: enqueue_compute(trait_id=trait_id))
    return True


def enqueue_compute(*, trait_id: int) -> None:
    """Queue a full computation of a trait (after the caller's commit, when it has one)."""
    from profiles.tasks import compute_trait

    try:
        compute_trait.delay(trait_id, "full")
    except (BrokerError, OSError):  # the broker is down: beat's schedule picks computing traits up
        logger.warning("Could not enqueue the full computation of trait %s.", trait_id, exc_info=True)


# --- Computing -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ComputeResult:
    changed: int
    profiles: int | None  # how many profiles were recomputed (None: everyone)
    duration_ms: int


def computed_trait_compute(*, trait_id: int, scope: str = "full", now: datetime | None = None) -> ComputeResult | None:
    """Recompute a trait: `full` over every profile, or `schedule` over the profiles whose
    value time can have changed. Writes only changed values. Returns None when the trait is
    gone or disabled. A definition that fails (a query error) marks the trait failed with the
    error, and re-raises."""
    now = now or timezone.now()
    started = time.monotonic()
    trait = ComputedTrait.objects.filter(pk=trait_id, enabled=True).first()
    if trait is None:
        return None
    defn = definition_of(trait)
    try:
        with transaction.atomic():
            _long_statements()
            if scope == "full" or (scope == "schedule" and defn.half_life_days is not None):
                # Decay changes every value of a score: recompute it whole.
                diff, touched = values_diff_apply(trait_id=trait.pk, defn=defn, now=now, profile_ids=None,
                                                  keep_rows=False), None  # fmt: skip
                _feed([], defn.key, diff, everyone=True)
            else:
                touched_ids = _window_candidates(trait, defn, now)
                diff = _scoped(trait.pk, defn, now, touched_ids)
                _feed(touched_ids, defn.key, diff)
                touched = len(touched_ids)
            duration = int((time.monotonic() - started) * 1000)
            ComputedTrait.objects.filter(pk=trait.pk).update(
                status=ComputedTrait.Status.LIVE, last_error="", last_computed_at=now, last_duration_ms=duration,
                profiles_with_value=ComputedTraitValue.objects.filter(trait_id=trait.pk).count(),
            )  # fmt: skip
    except DatabaseError as exc:
        ComputedTrait.objects.filter(pk=trait.pk).update(status=ComputedTrait.Status.FAILED, last_error=str(exc)[:2000])
        raise
    return ComputeResult(diff.changed, touched, duration)


def _long_statements() -> None:
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(f"SET LOCAL statement_timeout = '{FULL_STATEMENT_TIMEOUT}'")


def _window_candidates(trait: ComputedTrait, defn: TraitDefinition, now: datetime) -> list[int]:
    """The profiles one of whose matching events left the window since the last run."""
    if defn.window_days is None:
        return []
    window = timedelta(days=defn.window_days)
    since = (trait.last_computed_at or now) - window
    query = compile_candidates(defn, dialect_named(connection.vendor), since=since, until=now - window)
    with connection.cursor() as cursor:
        cursor.execute(query.text, query.params)
        return sorted(row[0] for row in cursor.fetchall())


def _scoped(
    trait_id: int, defn: TraitDefinition, now: datetime, profile_ids: Sequence[int], events: str = EVENTS
) -> Diff:
    rows: list[tuple[int, Any, Any]] = []
    for start in range(0, len(profile_ids), SCOPE_CHUNK):
        chunk = profile_ids[start : start + SCOPE_CHUNK]
        rows += values_diff_apply(trait_id=trait_id, defn=defn, now=now, profile_ids=chunk, keep_rows=True,
                                  events=events).rows  # fmt: skip
    return Diff(len(rows), rows)


def _feed(touched: Iterable[int], key: str, diff: Diff, *, everyone: bool = False) -> None:
    """The changed values' feed rows: one per profile, or one for everyone past
    `BROADCAST_OVER` (or when the run covered everyone)."""
    if not diff.changed:
        return
    if everyone or diff.changed > BROADCAST_OVER:
        feed_write([Change(0, "computed_traits", computed={key}, everyone=True)])
        return
    changes = Changes("computed_traits")
    for pid, _, _ in diff.rows:
        changes.of(pid).computed.add(key)
    feed_write(changes.values())


def computed_traits_due(*, now: datetime | None = None) -> list[int]:
    """Enabled time-dependent traits whose schedule has come (or that are still to be
    computed in full, e.g. after a broker outage lost their first task)."""
    now = now or timezone.now()
    due = []
    for trait in ComputedTrait.objects.filter(enabled=True).exclude(status=ComputedTrait.Status.FAILED):
        if trait.status == ComputedTrait.Status.COMPUTING:
            if trait.updated_at < now - timedelta(minutes=10):
                due.append(trait.pk)
            continue
        last = trait.last_computed_at
        if definition_of(trait).time_dependent and (
            last is None or now - last >= timedelta(hours=trait.schedule_hours)
        ):
            due.append(trait.pk)
    return due


def computed_trait_changes_prune(*, now: datetime | None = None) -> int:
    """Delete recorded changes past the retention (`CDP_TRAIT_CHANGES_KEEP_DAYS`)."""
    keep = timedelta(days=settings.CDP_TRAIT_CHANGES_KEEP_DAYS)
    return ComputedTraitChange.objects.filter(at__lt=(now or timezone.now()) - keep).delete()[0]


# --- The change feed's consumer ---------------------------------------------------------------------

# Changes after which every definition is recomputed for the profile: its events moved.
_MOVED = ("merged", "split", "split_from", "rebuilt")


def computed_traits_consume(rows: list[FeedRow]) -> None:
    """The `computed_traits` consumer: count the new events' names (for the admin's
    pickers), drop the values of profiles merged away, and recompute, for the profiles the
    changes touched, the definitions that depend on what changed. Idempotent: recomputing
    from the events gives the same values, and only changes are written."""
    now = timezone.now()
    traits = [(t, definition_of(t)) for t in ComputedTrait.objects.filter(enabled=True, status="live")]
    by_event: dict[str, list[int]] = {}
    for t, defn in traits:
        for name in defn.events:
            by_event.setdefault(name, []).append(t.pk)
    affected: dict[int, set[int]] = {t.pk: set() for t, _ in traits}
    names: Counter[str] = Counter()
    seen_at: dict[str, datetime] = {}
    gone: set[int] = set()
    for row in rows:
        what, pid = row.what, row.profile_id
        for name, n in (what.get("events") or {}).items():
            names[name] += n
            seen_at[name] = max(seen_at.get(name, row.at), row.at)
        if pid == 0:
            continue
        if what.get("merged_into") is not None or what.get("deleted"):
            gone.add(pid)
            continue
        if any(what.get(k) for k in _MOVED):
            for ids in affected.values():
                ids.add(pid)
            continue
        for name in what.get("events") or {}:
            for trait_id in by_event.get(name, ()):
                affected[trait_id].add(pid)
    if gone:
        ComputedTraitValue.objects.filter(profile_id__in=sorted(gone)).delete()
    changes = Changes("computed_traits")
    with events_scoped(sorted(set().union(*affected.values()))) as events:
        for t, defn in traits:
            if ids := affected[t.pk]:
                for pid, _, _ in _scoped(t.pk, defn, now, sorted(ids), events).rows:
                    changes.of(pid).computed.add(defn.key)
    _count_names(names, seen_at)
    feed_write(changes.values(), at=now)


def _count_names(names: Counter[str], seen_at: Mapping[str, datetime]) -> None:
    for name, n in sorted(names.items()):
        if len(name) > 200:
            continue
        updated = EventName.objects.filter(name=name).update(count=F("count") + n, last_seen_at=seen_at[name])
        if not updated:
            EventName.objects.get_or_create(name=name, defaults={"count": n, "last_seen_at": seen_at[name]})
