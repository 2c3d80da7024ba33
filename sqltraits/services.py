"""SQL trait definitions: create, change, delete (each audited), ask for a run, and find the
runs the schedule owes. Running one is `sqltraits.runner.sql_trait_run`."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import Max
from django.utils import timezone
from kombu.exceptions import OperationalError as BrokerError

from audit.services import audit_record, audited
from ingest.models import Source
from sqltraits.definitions import FIELDS, Definition, DefinitionError, definition_parse, key_check
from sqltraits.models import SqlTrait, SqlTraitRun
from sqltraits.runner import RUN_STALE_AFTER

logger = logging.getLogger(__name__)

# A queued run whose task has not started after this long lost it (a broker outage):
# the schedule's check enqueues it again (claiming a run twice is harmless).
QUEUED_STALE_AFTER = timedelta(minutes=10)


def source_name(key: str) -> str:
    return f"SQL trait: {key}"


def _shape(defn: Definition) -> dict[str, Any]:
    return {f: getattr(defn, f) for f in FIELDS if f != "key"}


def _own_source(key: str) -> Source:
    """The definition's source: new, or the one a deleted definition of the same key left."""
    source, _ = Source.objects.get_or_create(name=source_name(key), defaults={"kind": "sql"})
    if source.kind != "sql" or SqlTrait.objects.filter(source=source).exists():
        raise DefinitionError("key", f"A source named {source.name!r} exists already: choose another key.")
    if not source.enabled:
        Source.objects.filter(pk=source.pk).update(enabled=True)
    return source


def sql_trait_create(*, data: Mapping[str, Any], actor: Any = None, reason: str = "") -> SqlTrait:
    """Define a SQL trait, with its own source (kind `sql`). It runs on the schedule's next
    check (within minutes), or when asked. Raises `DefinitionError` naming the bad field."""
    key = key_check(data.get("key"))
    defn = definition_parse({**data, "key": key})
    if SqlTrait.objects.filter(key=key).exists():
        raise DefinitionError("key", f"A SQL trait {key!r} exists already.")
    with transaction.atomic():
        source = _own_source(key)
        try:
            with transaction.atomic():
                trait = SqlTrait.objects.create(
                    key=key, source=source, created_by=actor if hasattr(actor, "get_username") else None,
                    **_shape(defn),
                )  # fmt: skip
        except IntegrityError:
            raise DefinitionError("key", f"A SQL trait {key!r} exists already.") from None
        if audited(actor):
            audit_record(actor=actor, action="add", target=trait, reason=reason or "created",
                         changes={"definition": [None, _shape(defn)]})  # fmt: skip
    return trait


def sql_trait_update(*, key: str, data: Mapping[str, Any], actor: Any = None, reason: str = "") -> SqlTrait:
    """Change the fields given (the key never changes). Raises `SqlTrait.DoesNotExist` or
    `DefinitionError`."""
    if "key" in data and data["key"] != key:
        raise DefinitionError("key", "A SQL trait's key never changes: make a new one instead.")
    with transaction.atomic():
        trait = SqlTrait.objects.select_for_update().get(key=key)
        before = {f: getattr(trait, f) for f in FIELDS if f != "key"}
        defn = definition_parse({**before, **{f: data[f] for f in FIELDS if f in data}, "key": key})
        after = _shape(defn)
        changes = {f: [before[f], after[f]] for f in after if before[f] != after[f]}
        if changes:
            for field, (_, new) in changes.items():
                setattr(trait, field, new)
            trait.updated_at = timezone.now()
            trait.save()
            if audited(actor):
                audit_record(actor=actor, action="change", target=trait, reason=reason or "changed", changes=changes)
    return trait


def sql_trait_delete(*, key: str, actor: Any = None, reason: str = "") -> None:
    """Delete a definition with its runs and what they sent. Profiles keep the traits it set;
    its source is disabled (kept, for the events that name it). Raises `SqlTrait.DoesNotExist`."""
    with transaction.atomic():
        trait = SqlTrait.objects.select_for_update().get(key=key)
        if audited(actor):
            audit_record(actor=actor, action="delete", target=trait, reason=reason or "deleted",
                         changes={"definition": [_shape(definition_parse(_fields(trait))), None]})  # fmt: skip
        source_id = trait.source_id
        trait.delete()
        Source.objects.filter(pk=source_id).update(enabled=False)


def _fields(trait: SqlTrait) -> dict[str, Any]:
    return {f: getattr(trait, f) for f in FIELDS}


# --- Runs -----------------------------------------------------------------------------------------


def sql_trait_run_request(
    *, trait_id: int, trigger: str, actor: Any = None, reason: str = "", enqueue: bool = True
) -> tuple[SqlTraitRun, bool]:
    """Queue a run (its task enqueued after the commit, unless `enqueue` is false: the
    caller does it) unless one is queued or running: then that one. Returns the run and
    whether it is new. A run asked by a person is audited. Raises `SqlTrait.DoesNotExist`."""
    label = actor.get_username() if hasattr(actor, "get_username") else str(getattr(actor, "audit_label", "") or "")
    with transaction.atomic():
        trait = SqlTrait.objects.select_for_update().get(pk=trait_id)
        active = SqlTraitRun.objects.filter(trait=trait, status__in=SqlTraitRun.ACTIVE).first()
        if active is not None:
            return active, False
        try:
            with transaction.atomic():
                run = SqlTraitRun.objects.create(trait=trait, trigger=trigger, requested_by=label[:150])
        except IntegrityError:  # another request queued one meanwhile (the one-active-run index)
            return SqlTraitRun.objects.get(trait=trait, status__in=SqlTraitRun.ACTIVE), False
        if audited(actor):
            audit_record(actor=actor, action="run", target=trait, reason=reason or "run", changes={"run": run.pk})
        if enqueue:
            transaction.on_commit(lambda: enqueue_run(run_id=run.pk))
    return run, True


def enqueue_run(*, run_id: int) -> None:
    """Hand a queued run to a worker. A broker that is down leaves it queued: the schedule's
    check enqueues it again after `QUEUED_STALE_AFTER`."""
    from sqltraits.tasks import run_sql_trait

    try:
        run_sql_trait.delay(run_id)
    except (BrokerError, OSError):
        logger.warning("Could not enqueue SQL trait run %s; the schedule will.", run_id, exc_info=True)


def sql_traits_due(*, now: datetime | None = None) -> list[int]:
    """What the schedule owes, as run ids to enqueue: a new queued run for each enabled
    definition whose last run was queued `every_hours` ago or more (or never ran), and the
    runs queued long ago whose task was lost. A run still `running` past the task's time
    limit died with its worker: it is marked failed (and the definition is due again)."""
    now = now or timezone.now()
    SqlTraitRun.objects.filter(status=SqlTraitRun.Status.RUNNING, started_at__lt=now - RUN_STALE_AFTER).update(
        status=SqlTraitRun.Status.FAILED, finished_at=now,
        error="Interrupted: the worker running it stopped (killed, or past its time limit).",
    )  # fmt: skip
    due = list(
        SqlTraitRun.objects.filter(status=SqlTraitRun.Status.QUEUED, created_at__lt=now - QUEUED_STALE_AFTER)
        .order_by("id")
        .values_list("id", flat=True)
    )
    active = SqlTraitRun.objects.filter(status__in=SqlTraitRun.ACTIVE).values("trait_id")
    traits = SqlTrait.objects.filter(enabled=True).exclude(pk__in=active).annotate(last=Max("runs__created_at"))
    for trait in traits:
        last: datetime | None = trait.last
        if last is None or now - last >= timedelta(hours=trait.every_hours):
            run, new = sql_trait_run_request(trait_id=trait.pk, trigger="schedule", enqueue=False)
            if new:
                due.append(run.pk)
    return due
