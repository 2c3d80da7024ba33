"""Reads for the ingest debugger."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.db.models import Count, QuerySet, Sum
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


# --- The admin home ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Today:
    accepted: int
    duplicates: int
    rejected: int
    by_source: list[tuple[Source, int, int, int]]  # (source, accepted, duplicates, rejected), busiest first


def ingest_today(*, now: datetime | None = None) -> Today:
    """Messages received since midnight UTC, from the hourly counters (never the event log)."""
    now = now or timezone.now()
    midnight = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    sums = _sums(IngestCounter.objects.filter(hour__gte=midnight))
    sources = {s.pk: s for s in Source.objects.filter(pk__in=list(sums))}
    rows = sorted(((sources[pk], *sums[pk]) for pk in sums if pk in sources), key=lambda r: -(r[1] + r[3]))
    return Today(sum(r[1] for r in rows), sum(r[2] for r in rows), sum(r[3] for r in rows), rows)


@dataclass(frozen=True, slots=True)
class SourceProblem:
    source: Source
    problem: str


# A source needs attention when this share of what it sent in 24 hours was refused (and at
# least this many messages), when batches of it are parked, or when it went silent.
REFUSED_SHARE, REFUSED_AT_LEAST = 0.05, 10


def sources_failing(*, now: datetime | None = None) -> list[SourceProblem]:
    """Enabled sources that need attention: many refusals in the last 24 hours, batches
    parked after failing, or silence for 24 hours after sending in the 30 days before."""
    now = now or timezone.now()
    recent = _sums(IngestCounter.objects.filter(hour__gte=now - timedelta(hours=24)))
    month = _sums(IngestCounter.objects.filter(hour__gte=now - timedelta(days=30)))
    parked = dict(
        EventBatch.objects.filter(parked_at__isnull=False).values_list("source_id").annotate(n=Count("id")).order_by()
    )
    out = []
    for source in Source.objects.filter(enabled=True).order_by("name"):
        accepted, _, rejected = recent.get(source.pk, (0, 0, 0))
        if rejected >= REFUSED_AT_LEAST and rejected >= REFUSED_SHARE * (accepted + rejected):
            share = rejected / (accepted + rejected)
            out.append(SourceProblem(source, f"{rejected:,} of {accepted + rejected:,} messages refused in 24 hours "
                                             f"({share:.0%})"))  # fmt: skip
        if parked.get(source.pk):
            out.append(SourceProblem(source, f"{parked[source.pk]:,} batches parked after failing"))
        quiet_is_normal = source.kind == Source.Kind.SQL  # a SQL trait sends only what changed
        if not accepted and not rejected and month.get(source.pk, (0, 0, 0))[0] and not quiet_is_normal:
            out.append(SourceProblem(source, f"silent for 24 hours (it sent {month[source.pk][0]:,} in 30 days)"))
    return out
