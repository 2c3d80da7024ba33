"""Reads of the event log and profiles."""

from __future__ import annotations

from datetime import datetime

from profiles.models import Event


def events_unprocessed_ids(*, received_before: datetime, limit: int) -> list[int]:
    """Ids of events the pipeline has not finished, oldest first (the partial index
    `event_unprocessed` serves this)."""
    return list(
        Event.objects.filter(processed_at__isnull=True, received_at__lt=received_before)
        .order_by("received_at")
        .values_list("id", flat=True)[:limit]
    )


def events_recent_for_source(*, source_id: int, limit: int = 50) -> list[Event]:
    """The newest events a source stored, for the ingest debugger."""
    return list(Event.objects.filter(source_id=source_id).order_by("-received_at")[:limit])


def events_count_for_source(*, source_id: int, since: datetime | None = None) -> int:
    qs = Event.objects.filter(source_id=source_id)
    if since is not None:
        qs = qs.filter(received_at__gte=since)
    return qs.count()
