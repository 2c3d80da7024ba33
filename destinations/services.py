"""Destinations: define, change and delete them (each audited with who and why), replay
failed deliveries, send a test message, prune old deliveries. Delivering is
`destinations.delivery`; what the layers above owe is `destinations.outbox`."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from audit.services import SECRET, audit_record, audited
from destinations.adapters import ADAPTERS, Item
from destinations.adapters.base import DELIVERED
from destinations.definitions import SECRETS, Definition, DestinationError, definition_parse, public_settings
from destinations.fullsync import subjects_new, syncs_start
from destinations.models import Delivery, DeliveryDay, Destination
from destinations.outbox import days_count, retry_window, wake

REPLAYABLE = (Delivery.Status.DEAD, Delivery.Status.DISCARDED)


def definition_of(dest: Destination) -> Definition:
    return Definition(name=dest.name, kind=dest.kind, enabled=dest.enabled, audiences=dest.audiences,
                      traits=dest.traits, events=dest.events or {}, consent_categories=list(dest.consent_categories),
                      settings=dict(dest.settings))  # fmt: skip


def _audit_shape(defn: Definition) -> dict[str, Any]:
    shape = defn.fields()
    shape["settings"] = {**public_settings(defn.settings), **{k: SECRET for k in SECRETS if k in defn.settings}}
    return shape


def destination_create(*, data: Mapping[str, Any], actor: Any = None, reason: str = "") -> Destination:
    """A new destination; it first gets a full sync of the audiences it takes. Raises
    `DestinationError` naming the bad field."""
    defn = definition_parse(data)
    with transaction.atomic():
        try:
            with transaction.atomic():
                dest = Destination.objects.create(**defn.fields())
        except IntegrityError:
            raise DestinationError("name", f"A destination named {defn.name!r} exists already.") from None
        if audited(actor):
            audit_record(actor=actor, action="add", target=dest, reason=reason or "created",
                         changes={"definition": [None, _audit_shape(defn)]})  # fmt: skip
        if defn.enabled:
            syncs_start(destination=dest, subjects=subjects_new([], defn.audiences))
    return dest


def destination_update(
    *, destination_id: int, data: Mapping[str, Any], actor: Any = None, reason: str = ""
) -> Destination:
    """Change the fields given (secrets left out stay). Audiences it newly takes get a full
    sync. Raises `Destination.DoesNotExist` or `DestinationError`."""
    with transaction.atomic():
        dest = Destination.objects.select_for_update().get(pk=destination_id)
        before = definition_of(dest)
        after = definition_parse(data, current=before)
        old, new = _audit_shape(before), _audit_shape(after)
        changes = {f: [old[f], new[f]] for f in new if old[f] != new[f]}
        if before.settings != after.settings and "settings" not in changes:
            changes["settings"] = [SECRET, SECRET]  # only a secret changed
        for f, v in after.fields().items():
            setattr(dest, f, v)
        dest.updated_at = timezone.now()
        if after.settings != before.settings or after.enabled != before.enabled:
            dest.paused_until = None  # new credentials, or switched back on: try again now
        try:
            with transaction.atomic():
                dest.save()
        except IntegrityError:
            raise DestinationError("name", f"A destination named {after.name!r} exists already.") from None
        if changes and audited(actor):
            audit_record(actor=actor, action="change", target=dest, reason=reason or "changed", changes=changes)
        if after.enabled:
            was = before.audiences if before.enabled else []
            syncs_start(destination=dest, subjects=subjects_new(was, after.audiences))
        transaction.on_commit(lambda: wake([dest.pk]))
    return dest


def destination_delete(*, destination_id: int, actor: Any = None, reason: str = "") -> None:
    """Delete the destination with its deliveries and counts."""
    with transaction.atomic():
        dest = Destination.objects.select_for_update().get(pk=destination_id)
        if audited(actor):
            audit_record(actor=actor, action="delete", target=dest, reason=reason or "deleted", target_id=dest.pk,
                         changes={"definition": [_audit_shape(definition_of(dest)), None]})  # fmt: skip
        dest.delete()


def deliveries_replay(
    *, destination_id: int, delivery_id: int | None = None, actor: Any = None, reason: str = ""
) -> int:
    """Put dead (and discarded) rows back to pending with a new retry window: one row, or
    every dead row of the destination. Their messageId stays, so a receiver can tell a
    replay from a new message. Returns how many; audited."""
    now = timezone.now()
    with transaction.atomic():
        dest = Destination.objects.select_for_update().get(pk=destination_id)
        rows = Delivery.objects.filter(destination_id=dest.pk)
        rows = (
            rows.filter(pk=delivery_id, status__in=REPLAYABLE)
            if delivery_id
            else rows.filter(status=Delivery.Status.DEAD)
        )
        n = rows.update(status=Delivery.Status.PENDING, attempts=0, next_attempt_at=now, finished_at=None,
                        expires_at=now + retry_window(), reason="replayed")  # fmt: skip
        Destination.objects.filter(pk=dest.pk).update(paused_until=None)
        if n and audited(actor):
            what = f"delivery {delivery_id}" if delivery_id else "every dead delivery"
            audit_record(actor=actor, action="replay", target=dest, reason=reason or "replayed",
                         changes={"replayed": [None, {"what": what, "count": n}]})  # fmt: skip
        if n:
            transaction.on_commit(lambda: wake([dest.pk]))
    return n


def test_message() -> dict[str, Any]:
    """What "Send a test message" sends: an identify of a made-up person, as Segment's test does."""
    return {
        "type": "identify", "messageId": f"test-{uuid.uuid4()}", "userId": "cdp-test-user",
        "traits": {"email": "test@example.com", "cdp_test": True}, "timestamp": timezone.now().isoformat(),
        "context": {"library": {"name": "cdp", "version": "1"}},
    }  # fmt: skip


def destination_test(*, destination_id: int, actor: Any = None) -> Delivery:
    """Send a test message now (outside any transaction) and keep what happened as a
    delivery of kind `test`. A webhook gets an identify; a list destination a contact
    update of `test@example.com` (Mailjet), or its upsert (Mailchimp)."""
    dest = Destination.objects.get(pk=destination_id)
    now = timezone.now()
    message = test_message()
    row = Delivery.objects.create(
        destination=dest, person="test", kind=Delivery.Kind.TEST, message_id=message["messageId"], message=message,
        created_at=now, expires_at=now, next_attempt_at=now + timedelta(days=3650),
    )  # fmt: skip
    adapter = ADAPTERS[dest.kind](destination_id=dest.pk, settings=dest.settings, state=dict(dest.state or {}))
    outcome = adapter.send([Item(row.pk, row.kind, "", message)])[row.pk]
    status = {DELIVERED: Delivery.Status.DELIVERED, "filtered": Delivery.Status.FILTERED}.get(
        outcome.status, Delivery.Status.DISCARDED
    )
    Delivery.objects.filter(pk=row.pk).update(
        status=status, attempts=1, finished_at=timezone.now(), status_code=outcome.status_code,
        request=outcome.request, response=outcome.response, reason=outcome.reason or "test message",
    )  # fmt: skip
    if audited(actor):
        audit_record(actor=actor, action="test", target=dest, reason="sent a test message",
                     changes={"test": [None, status]})  # fmt: skip
    row.refresh_from_db()
    return row


def deliveries_prune(*, now: Any = None) -> int:
    """Delete finished deliveries older than `CDP_DESTINATION_KEEP_DAYS` (30 by default),
    and their days' counts after a year. Pending rows are never pruned. Returns how many."""
    now = now or timezone.now()
    keep = timedelta(days=int(getattr(settings, "CDP_DESTINATION_KEEP_DAYS", 30)))
    finished = [s for s in Delivery.Status.values if s != Delivery.Status.PENDING]
    n = 0
    while True:
        ids = list(Delivery.objects.filter(created_at__lt=now - keep, status__in=finished)
                   .values_list("pk", flat=True)[:5000])  # fmt: skip
        if not ids:
            break
        n += Delivery.objects.filter(pk__in=ids).delete()[0]
    DeliveryDay.objects.filter(day__lt=(now - timedelta(days=400)).date()).delete()
    return n


__all__ = [
    "DestinationError", "days_count", "deliveries_prune", "deliveries_replay", "destination_create",
    "destination_delete", "destination_test", "destination_update",
]  # fmt: skip
