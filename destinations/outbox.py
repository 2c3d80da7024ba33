"""The outbox: what the layers above hand to destinations, inside their own transaction.

`deliveries_enqueue` writes one `Delivery` per message and subscribed destination, in the
caller's transaction (a rollback takes the deliveries with it; a commit keeps them: nothing
lost, nothing owed twice, as `(destination, messageId)` is unique). Each row is pending, or
filtered at once with its reason (consent, the integrations object, what the kind takes).
The destinations with pending rows are woken when the transaction commits."""

from __future__ import annotations

import logging
import uuid
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone
from kombu.exceptions import OperationalError as BrokerError

from destinations.models import Delivery, DeliveryDay, Destination
from destinations.routing import Route, filtered_reason

logger = logging.getLogger(__name__)

# Rows written per INSERT.
INSERT_CHUNK = 500


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One Segment-format message for the destinations. `person` orders it (a destination
    gets a person's messages in the order they were enqueued); `subject` is what it is
    about: the audience or trait key; for events, `source_id` and `event` say which."""

    kind: str  # audience | trait | event | sync
    subject: str
    person: str
    message: dict[str, Any]
    source_id: int | None = None
    event: str | None = None


@dataclass(slots=True)
class Enqueued:
    pending: int = 0
    filtered: int = 0
    destinations: set[int] = field(default_factory=set)


def retry_window() -> timedelta:
    return timedelta(hours=float(getattr(settings, "CDP_DESTINATION_RETRY_HOURS", 4)))


def routes(*, only: Iterable[int] | None = None) -> list[Route]:
    """The enabled destinations, as routing sees them (one query)."""
    rows = Destination.objects.filter(enabled=True)
    if only is not None:
        rows = rows.filter(pk__in=list(only))
    return [
        Route(
            id=d.pk, name=d.name, kind=d.kind, audiences=d.audiences, traits=d.traits,
            event_sources=frozenset((d.events or {}).get("sources") or ()),
            event_names=frozenset((d.events or {}).get("names") or ()),
            consent_categories=tuple(d.consent_categories or ()),
        )
        for d in rows.only("id", "name", "kind", "audiences", "traits", "events", "consent_categories")
    ]  # fmt: skip


def subscribed(kind: str, subjects: Iterable[str], *, found: Sequence[Route] | None = None) -> set[str]:
    """Which of `subjects` (audience or trait keys) some enabled destination takes: the layers
    above build messages only for those."""
    rs = routes() if found is None else found
    return {s for s in subjects for r in rs if r.subscribes(kind, s)}


def event_stream_sources(*, found: Sequence[Route] | None = None) -> set[int]:
    """The sources whose raw events some enabled webhook takes."""
    return {s for r in (routes() if found is None else found) if r.kind == "webhook" for s in r.event_sources}


def deliveries_enqueue(
    *, messages: Sequence[Outgoing], only: Iterable[int] | None = None, found: Sequence[Route] | None = None,
    now: datetime | None = None,
) -> Enqueued:  # fmt: skip
    """Owe each message to every enabled destination that subscribes to it (`only`: to
    those), in the caller's transaction. A message without `messageId` gets one. Idempotent
    per (destination, messageId). Raises nothing of its own; database errors roll back the caller."""
    result = Enqueued()
    if not messages:
        return result
    now = now or timezone.now()
    wanted = None if only is None else set(only)
    rs = [r for r in (routes(only=wanted) if found is None else found) if wanted is None or r.id in wanted]
    if not rs:
        return result
    expires = now + retry_window()
    rows: list[Delivery] = []
    filtered: Counter[int] = Counter()
    for m in messages:
        takers = [r for r in rs if r.subscribes(m.kind, m.subject, source_id=m.source_id, event=m.event)]
        if not takers:
            continue
        message = m.message if m.message.get("messageId") else {**m.message, "messageId": str(uuid.uuid4())}
        for r in takers:
            reason = filtered_reason(message, r)
            status = Delivery.Status.FILTERED if reason else Delivery.Status.PENDING
            rows.append(Delivery(
                destination_id=r.id, person=m.person[:200], kind=m.kind, subject=m.subject[:200],
                message_id=str(message["messageId"])[:200], message=message, status=status, reason=reason or "",
                created_at=now, next_attempt_at=now, expires_at=expires, finished_at=now if reason else None,
            ))  # fmt: skip
            if reason:
                filtered[r.id] += 1
                result.filtered += 1
            else:
                result.pending += 1
                result.destinations.add(r.id)
    for start in range(0, len(rows), INSERT_CHUNK):
        Delivery.objects.bulk_create(rows[start : start + INSERT_CHUNK], ignore_conflicts=True)
    for destination_id, n in filtered.items():
        days_count(destination_id=destination_id, status=Delivery.Status.FILTERED, n=n, day=now.date())
    if result.destinations:
        woken = sorted(result.destinations)
        transaction.on_commit(lambda: wake(woken))
    return result


# A drain asked for and not started yet is not asked for again (each commit that owes a
# destination something wakes it: at 50 commits a second, three destinations were 150 tasks
# a second, nearly all finding the lease taken). The mark is dropped when the drain starts,
# and expires by itself if the task was lost.
WAKE_MARK_SECONDS = 60


def wake_mark(destination_id: int) -> str:
    return f"destinations:drain-asked:{destination_id}"


def wake(destination_ids: Iterable[int], *, force: bool = False) -> None:
    """Ask a worker to drain each destination (after the commit), unless a drain is asked for
    already or the destination is paused after a failure (`force`: ask anyway, as the sweep
    does). A broker outage loses nothing: beat's sweep finds the pending rows."""
    from destinations.tasks import drain  # the task module imports the delivery code, which imports this

    ids = list(destination_ids)
    if not force:
        now = timezone.now()
        awake = Destination.objects.filter(pk__in=ids, enabled=True).filter(
            Q(paused_until__isnull=True) | Q(paused_until__lte=now)
        )
        ids = list(awake.values_list("pk", flat=True))
    for destination_id in ids:
        if not force and not cache.add(wake_mark(destination_id), 1, timeout=WAKE_MARK_SECONDS):
            continue
        try:
            drain.delay(destination_id)
        except BrokerError:
            cache.delete(wake_mark(destination_id))
            logger.warning("Broker unavailable: destination %s is drained by the next sweep.", destination_id)


def days_count(*, destination_id: int, status: str, n: int, day: date) -> None:
    """Add `n` to the day's count of deliveries that ended with `status` (one upsert)."""
    if n <= 0:
        return
    table = DeliveryDay._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} (destination_id, day, status, count) VALUES (%s, %s, %s, %s) "
            f"ON CONFLICT (destination_id, day, status) DO UPDATE SET count = {table}.count + excluded.count",
            [destination_id, day, status, n],
        )
