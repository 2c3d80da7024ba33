"""Delivering the outbox: one drain per destination at a time (a lease on its row), in
batches of due rows, at most one per person (a person's later rows wait while an earlier
one is pending, so an exit never overtakes its entry).

Before a batch is sent its rows are marked tried and not due until the lease would end: a
worker killed mid-request loses nothing, and the next drain sends them again with the same
messageId (the only way a message reaches a receiver twice). A transient failure (429, 5xx,
a timeout, a refused connection) pauses the whole destination with randomized exponential
backoff, honouring Retry-After, until the row's window (4 h by default) ends: it is then
dead. Other 4xx are discarded with the reason and the response."""

from __future__ import annotations

import json
import logging
import random
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import connection, transaction
from django.db.models import OuterRef, Q, Subquery
from django.utils import timezone

from destinations.adapters import ADAPTERS, Item, Outcome
from destinations.adapters.base import DELIVERED, DISCARDED, FILTERED, RETRY
from destinations.models import Delivery, Destination
from destinations.outbox import days_count, routes

logger = logging.getLogger(__name__)

# A drain holds its destination this long without renewing; a killed worker's rows are
# tried again after it. Longer than a batch can take (Mailjet's job polling: 30 s).
LEASE = timedelta(seconds=90)
# A drain gives its worker back after this long (other destinations' drains wait for workers).
DRAIN_SECONDS = 20.0
# Rows per batch: a webhook sends them one by one over one kept-alive connection (the batch's
# reads and writes cost about 0.3 ms a row against 1.2 ms for the request, bench/destinations.py);
# Mailjet and Mailchimp take them in one bulk request per list (Mailchimp's batches take 500).
BATCH = {"webhook": 200, "mailjet": 500, "mailchimp": 500}
# A batch sent item by item stops after this long, the rest left untried: well inside the
# task's soft time limit (120 s), so a slow receiver never has a delivered batch sent again.
ADAPTER_SECONDS = 30.0
# Backoff: the first retry after 1-3 s, doubling to at most 30 minutes, each randomized.
BACKOFF_FIRST_SECONDS = 2.0
BACKOFF_MAX_SECONDS = 1800.0
RETRY_AFTER_MAX_SECONDS = 3600.0


@dataclass(frozen=True, slots=True)
class Drained:
    claimed: bool
    sent: int = 0
    delivered: int = 0
    failed: int = 0


def backoff_seconds(attempts: int, retry_after: float | None = None, rng: random.Random | None = None) -> float:
    """How long to wait after the `attempts`-th failed try: Retry-After when the destination
    gave one (at most an hour), else 2^(n-1) x 2 s (at most 30 min), times 0.5-1.5."""
    rng = rng or random.SystemRandom()
    if retry_after is not None:
        return min(retry_after, RETRY_AFTER_MAX_SECONDS) + rng.uniform(0, 1)
    return min(BACKOFF_MAX_SECONDS, BACKOFF_FIRST_SECONDS * 2 ** max(0, attempts - 1)) * rng.uniform(0.5, 1.5)


def _lease_take(destination_id: int, owner: str, now: datetime) -> bool:
    free = Q(lease_until__isnull=True) | Q(lease_until__lt=now) | Q(lease_owner=owner)
    return bool(Destination.objects.filter(pk=destination_id).filter(free).update(lease_until=now + LEASE,
                                                                                  lease_owner=owner))  # fmt: skip


def _lease_release(destination_id: int, owner: str) -> None:
    Destination.objects.filter(pk=destination_id, lease_owner=owner).update(lease_until=None, lease_owner="")


def due(destination_id: int, now: datetime, limit: int) -> list[Delivery]:
    """The destination's pending rows that are due and first of their person, oldest first."""
    # The person's first pending row, as a correlated subquery: always one probe of
    # `delivery_person_pending` per candidate. As NOT EXISTS, PostgreSQL planned it (before
    # the table's statistics caught up) as an anti-join scanning every pending row of the
    # destination per candidate: 44 ms a batch at 2,000 pending, against 1.
    first = Delivery.objects.filter(
        destination_id=OuterRef("destination_id"), person=OuterRef("person"), status=Delivery.Status.PENDING,
    ).order_by("id").values("id")[:1]  # fmt: skip
    rows = Delivery.objects.filter(destination_id=destination_id, status=Delivery.Status.PENDING,
                                   next_attempt_at__lte=now, id=Subquery(first))  # fmt: skip
    return list(rows.order_by("id")[:limit])


def has_due(destination_id: int, now: datetime) -> bool:
    return Delivery.objects.filter(destination_id=destination_id, status=Delivery.Status.PENDING,
                                   next_attempt_at__lte=now).exists()  # fmt: skip


def destination_drain(*, destination_id: int, budget: float = DRAIN_SECONDS) -> Drained:
    """Deliver the destination's due rows until none is left, it fails, or `budget` seconds
    pass. Does nothing when another drain holds it, or it is disabled, gone or paused.
    Safe to run twice at once: the second finds the lease taken."""
    owner = uuid.uuid4().hex
    if not _lease_take(destination_id, owner, timezone.now()):
        return Drained(claimed=False)
    started = time.monotonic()
    sent = delivered = failed = 0
    try:
        while time.monotonic() - started < budget:
            now = timezone.now()
            dest = Destination.objects.filter(pk=destination_id).first()
            if dest is None or not dest.enabled or (dest.paused_until and dest.paused_until > now):
                break
            rows = due(dest.pk, now, BATCH.get(dest.kind, 100))
            if not rows:
                break
            rows = _still_subscribed(dest, rows, now)
            if not rows:
                continue
            Delivery.objects.filter(pk__in=[r.pk for r in rows]).update(next_attempt_at=now + LEASE)
            adapter = ADAPTERS[dest.kind](destination_id=dest.pk, settings=dest.settings, state=dict(dest.state or {}),
                                          budget=ADAPTER_SECONDS)  # fmt: skip
            items = [Item(r.pk, r.kind, r.subject, r.message) for r in rows]
            outcomes = adapter.send(items)
            counts = outcomes_record(dest, rows, outcomes, state=adapter.state, now=timezone.now())
            sent += len(outcomes)
            delivered += counts[DELIVERED]
            failed += counts[RETRY] + counts[DISCARDED]
            # Renew; a lease lost meanwhile (this batch outlasted it, and another drain took
            # over) ends this one.
            if counts[RETRY] or not _lease_take(destination_id, owner, timezone.now()):
                break
    finally:
        _lease_release(destination_id, owner)
    return Drained(True, sent, delivered, failed)


def _still_subscribed(dest: Destination, rows: list[Delivery], now: datetime) -> list[Delivery]:
    """Rows whose subject the destination no longer subscribes to end filtered; the rest."""
    route = next((r for r in routes(only=[dest.pk])), None)
    gone = [r for r in rows if route is None or (r.kind in ("audience", "trait", "sync")
                                                 and not route.subscribes(r.kind, r.subject))]  # fmt: skip
    if gone:
        Delivery.objects.filter(pk__in=[r.pk for r in gone]).update(
            status=Delivery.Status.FILTERED, reason="not subscribed: the destination stopped taking it",
            finished_at=now,
        )  # fmt: skip
        days_count(destination_id=dest.pk, status=Delivery.Status.FILTERED, n=len(gone), day=now.date())
    return [r for r in rows if r not in gone]


def outcomes_record(
    dest: Destination, rows: Sequence[Delivery], outcomes: dict[int, Outcome], *, state: dict, now: datetime
) -> Counter[str]:
    """Write what became of each row: final statuses with their day's count; a retry due
    after its backoff (dead past its window), pausing the destination; rows not tried are
    due again at once, untried."""
    counts: Counter[str] = Counter()
    finals: Counter[str] = Counter()
    changed: list[Delivery] = []
    pause: float | None = None
    errors: list[str] = []
    for row in rows:
        o = outcomes.get(row.pk)
        if o is None:
            row.next_attempt_at = now
            changed.append(row)
            continue
        counts[o.status] += 1
        row.attempts += 1
        row.status_code, row.request, row.response = o.status_code, o.request, o.response
        row.reason, row.notes = o.reason, o.notes or {}
        if o.status == RETRY:
            wait = backoff_seconds(row.attempts, o.retry_after)
            pause = max(pause or 0.0, wait)
            errors.append(o.reason)
            if now + timedelta(seconds=wait) >= row.expires_at:
                row.status, row.finished_at = Delivery.Status.DEAD, now
                row.reason = f"retried for the whole window; last: {o.reason}"
                finals[Delivery.Status.DEAD] += 1
            else:
                row.next_attempt_at = now + timedelta(seconds=wait)
        else:
            row.status = {DELIVERED: Delivery.Status.DELIVERED, DISCARDED: Delivery.Status.DISCARDED,
                          FILTERED: Delivery.Status.FILTERED}[o.status]  # fmt: skip
            row.finished_at = now
            finals[row.status] += 1
            if o.status == DISCARDED:
                errors.append(o.reason)
        changed.append(row)
    with transaction.atomic():
        _rows_update(changed)
        for status, n in finals.items():
            days_count(destination_id=dest.pk, status=status, n=n, day=now.date())
        update: dict[str, object] = {"state": state}
        if counts[DELIVERED]:
            update["last_delivered_at"] = now
        if errors:
            update |= {"last_error": errors[-1][:2000], "last_error_at": now}
        if pause is not None:
            update["paused_until"] = now + timedelta(seconds=pause)
            # A destination failing for the whole window: what waited that long is dead.
            expired = Delivery.objects.filter(destination_id=dest.pk, status=Delivery.Status.PENDING,
                                              expires_at__lte=now)  # fmt: skip
            if n := expired.update(
                status=Delivery.Status.DEAD,
                finished_at=now,
                reason=f"not delivered within the retry window; last error: {errors[-1][:500]}",
            ):
                days_count(destination_id=dest.pk, status=Delivery.Status.DEAD, n=n, day=now.date())
        Destination.objects.filter(pk=dest.pk).update(**update)
    return counts


def _rows_update(rows: Sequence[Delivery]) -> None:
    """Write each row's outcome: one statement, executed for every row (psycopg pipelines
    them). The ORM's bulk_update built a CASE per field and row: 3.6 ms a row, against the
    HTTP request's 1.2 ms."""
    if not rows:
        return
    adapt = connection.ops.adapt_datetimefield_value
    jsonb = "CAST(%s AS jsonb)" if connection.vendor == "postgresql" else "%s"
    with connection.cursor() as cursor:
        cursor.executemany(
            f"UPDATE {Delivery._meta.db_table} SET status = %s, attempts = %s, next_attempt_at = %s, finished_at = %s, "
            f"status_code = %s, request = %s, response = %s, reason = %s, notes = {jsonb} WHERE id = %s",
            [(r.status, r.attempts, adapt(r.next_attempt_at), adapt(r.finished_at), r.status_code, r.request,
              r.response, r.reason, json.dumps(r.notes or {}), r.pk) for r in rows],
        )  # fmt: skip


def drain_needed(destination_id: int, now: datetime) -> bool:
    """Whether the destination has rows due and may be drained now (enabled, not paused)."""
    dest = Destination.objects.filter(pk=destination_id, enabled=True).only("paused_until").first()
    return dest is not None and not (dest.paused_until and dest.paused_until > now) and has_due(destination_id, now)


def drains_due(*, now: datetime | None = None) -> list[int]:
    """The destinations to drain now: enabled, not paused, not held by a drain, with due rows."""
    now = now or timezone.now()
    idle = Destination.objects.filter(enabled=True).filter(Q(paused_until__isnull=True) | Q(paused_until__lte=now))
    idle = idle.filter(Q(lease_until__isnull=True) | Q(lease_until__lt=now))
    return [d for d in idle.values_list("pk", flat=True) if has_due(d, now)]
