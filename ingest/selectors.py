"""Reads for the ingest debugger."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db.models import QuerySet, Sum
from django.utils import timezone

from ingest.missed import missed_recent
from ingest.models import IngestCounter, IngestNotice, RejectedMessage, Source
from profiles.models import Event, EventBatch
from profiles.selectors import batches_parked, batches_waiting, events_recent_for_source


@dataclass(frozen=True, slots=True)
class SourceCounters:
    source: Source
    accepted_24h: int
    duplicates_24h: int
    rejected_24h: int
    accepted_total: int
    rejected_total: int


def debugger_overview() -> list[SourceCounters]:
    """Counters of every source: the last 24 hours and the 30 days the counters keep."""
    since = timezone.now() - timedelta(hours=24)
    recent = _sums(IngestCounter.objects.filter(hour__gte=since))
    total = _sums(IngestCounter.objects.all())
    empty = (0, 0, 0)
    return [
        SourceCounters(
            source=s,
            accepted_24h=recent.get(s.pk, empty)[0],
            duplicates_24h=recent.get(s.pk, empty)[1],
            rejected_24h=recent.get(s.pk, empty)[2],
            accepted_total=total.get(s.pk, empty)[0],
            rejected_total=total.get(s.pk, empty)[2],
        )
        for s in Source.objects.order_by("name")
    ]


def _sums(counters: QuerySet[IngestCounter]) -> dict[int, tuple[int, int, int]]:
    rows = counters.values_list("source").annotate(Sum("accepted"), Sum("duplicates"), Sum("rejected"))
    return {source: (a or 0, d or 0, r or 0) for source, a, d, r in rows}


def debugger_recent(*, source_id: int | None, limit: int = 50) -> tuple[list[Event], list[RejectedMessage]]:
    """The newest accepted and refused messages of a source (None: the unknown source)."""
    accepted = events_recent_for_source(source_id=source_id, limit=limit) if source_id is not None else []
    refused = (
        RejectedMessage.objects.filter(source_id=source_id)
        if source_id
        else RejectedMessage.objects.filter(source__isnull=True)
    )
    rejected = list(refused.order_by("-received_at", "-id")[:limit])
    return accepted, rejected


def debugger_waiting(*, source_id: int) -> tuple[int, datetime | None]:
    """How many of a source's accepted messages wait for the pipeline, and since when."""
    return batches_waiting(source_id=source_id)


# What each notice code means, for the people reading the debugger.
NOTICE_REASONS = {
    "rejected": "Requests refused: no valid write key.",
    "rejections_not_stored": "Refusals counted but not kept: past this minute's cap of copies the debugger keeps "
    "(CDP_REJECTED_PER_MINUTE_*), so a flood cannot fill the disk.",
    "identity_kind_cap": "Identifiers not used for matching: messages may add only so many identity kinds "
    "(Identity settings, max auto kinds). They stay on the stored event.",
}


@dataclass(frozen=True, slots=True)
class Notice:
    code: str
    reason: str
    last_24h: int
    last_30d: int


def debugger_notices(*, source_id: int) -> list[Notice]:
    """What a source's messages (0: requests with no valid write key) had counted without
    being stored or used, by reason: the last 24 hours and the 30 days kept."""
    since = timezone.now() - timedelta(hours=24)
    rows = IngestNotice.objects.filter(source_id=source_id)
    recent = dict(rows.filter(hour__gte=since).values_list("code").annotate(Sum("count")))
    total = dict(rows.values_list("code").annotate(Sum("count")))
    return [
        Notice(code, NOTICE_REASONS.get(code) or code, recent.get(code) or 0, count or 0)
        for code, count in sorted(total.items())
    ]


def debugger_parked(*, source_id: int) -> list[EventBatch]:
    """A source's batches parked after failing too often, with their errors."""
    return batches_parked(source_id=source_id)


def debugger_missed_pixels() -> int:
    """Pixel calls of the last 24 hours answered without being stored: the database was
    unavailable (counted in the cache, so 0 if the cache cannot say)."""
    return missed_recent(endpoint="pixel")
