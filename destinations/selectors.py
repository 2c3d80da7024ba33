"""Reading destinations: health over the last day, the failing ones, those that take a
subject (an audience's page), and the delivery log."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db.models import Count, Min, Q
from django.utils import timezone

from destinations.models import Delivery, Destination, FullSync

DAY = timedelta(hours=24)


@dataclass(frozen=True, slots=True)
class Health:
    destination: Destination
    delivered: int
    pending: int
    retrying: int
    discarded: int
    filtered: int
    dead: int
    oldest_pending: datetime | None
    sync: FullSync | None  # the running full sync, if any

    @property
    def failing(self) -> bool:
        d = self.destination
        erred_last = d.last_error_at is not None and (
            d.last_delivered_at is None or d.last_error_at > d.last_delivered_at
        )
        return self.dead > 0 or (self.retrying > 0 and erred_last)


def destinations_health(*, ids: Sequence[int] | None = None, now: datetime | None = None) -> list[Health]:
    """Each destination's last 24 hours: what ended delivered, discarded, filtered or dead,
    what is pending (and retrying), the oldest pending, its running sync. Three queries."""
    now = now or timezone.now()
    dests = list(Destination.objects.order_by("name") if ids is None else Destination.objects.filter(pk__in=ids))
    since = now - DAY
    ended = (Delivery.objects.filter(destination__in=dests, finished_at__gte=since)
             .values("destination_id", "status").annotate(n=Count("id")))  # fmt: skip
    counts: dict[tuple[int, str], int] = {(r["destination_id"], r["status"]): r["n"] for r in ended}
    waiting = {r["destination_id"]: r for r in Delivery.objects.filter(destination__in=dests, status="pending")
               .values("destination_id").annotate(n=Count("id"), retrying=Count("id", filter=Q(attempts__gt=0)),
                                                  oldest=Min("created_at"))}  # fmt: skip
    syncs = {s.destination_id: s for s in FullSync.objects.filter(destination__in=dests, status="running")}
    out = []
    for d in dests:
        w: dict[str, Any] = dict(waiting.get(d.pk) or {})
        out.append(Health(
            d, counts.get((d.pk, "delivered"), 0), w.get("n", 0), w.get("retrying", 0),
            counts.get((d.pk, "discarded"), 0), counts.get((d.pk, "filtered"), 0), counts.get((d.pk, "dead"), 0),
            w.get("oldest"), syncs.get(d.pk),
        ))  # fmt: skip
    return out


def destinations_failing(*, now: datetime | None = None) -> list[Health]:
    """Enabled destinations with dead rows in the last day, or retrying since their last success."""
    return [h for h in destinations_health(now=now) if h.destination.enabled and h.failing]


@dataclass(frozen=True, slots=True)
class SubjectDestination:
    destination: Destination
    status: str
    last_delivered_at: datetime | None


def subject_destinations(*, kind: str, key: str) -> list[SubjectDestination]:
    """The destinations that take an audience (or trait) `key`, with their sync state."""
    field = "audiences" if kind == "audience" else "traits"
    takers = [d for d in Destination.objects.order_by("name") if getattr(d, field) == "all" or key in getattr(d, field)]
    health = {h.destination.pk: h for h in destinations_health(ids=[d.pk for d in takers])}
    syncs = {s.destination_id: s for s in FullSync.objects.filter(destination__in=takers, subject=key).order_by("id")}
    out = []
    for d in takers:
        h, sync = health[d.pk], syncs.get(d.pk)
        if not d.enabled:
            status = "disabled"
        elif sync is not None and sync.status == FullSync.Status.RUNNING:
            status = f"full sync {sync.progress}% ({sync.done:,} of {sync.total:,})"
        elif h.failing:
            status = f"failing: {d.last_error[:200]}"
        elif h.pending:
            status = f"syncing: {h.pending:,} pending"
        else:
            status = "in sync"
        out.append(SubjectDestination(d, status, d.last_delivered_at))
    return out


def deliveries_page(
    *, destination_id: int, status: str | None = None, before: int | None = None, limit: int = 50
) -> tuple[list[Delivery], int | None]:
    """The delivery log newest first, keyset by id; returns the rows and the next cursor."""
    rows = Delivery.objects.filter(destination_id=destination_id)
    if status:
        rows = rows.filter(status=status)
    if before:
        rows = rows.filter(pk__lt=before)
    page = list(rows.order_by("-id")[: limit + 1])
    return page[:limit], (page[limit - 1].pk if len(page) > limit else None)
