"""Keeps the ingest debugger bounded, so it can never fill the disk."""

from __future__ import annotations

from datetime import timedelta

from django.db.models import Q
from django.utils import timezone

from ingest.models import IngestCounter, IngestNotice, RejectedMessage, Source

# Enough to debug an integration (a page of each refusal reason), small enough to ignore:
# 1,000 rows of at most 2 KB is 2 MB per source.
REJECTED_KEEP_PER_SOURCE = 1000
COUNTER_KEEP = timedelta(days=30)


def debugger_trim(*, keep: int = REJECTED_KEEP_PER_SOURCE) -> int:
    """Delete all but the newest `keep` refused messages per source (and of the unknown
    source), and counters and notices older than 30 days. Idempotent. Returns the rows deleted."""
    deleted = 0
    owners: list[Q] = [Q(source__isnull=True)]
    owners += [Q(source_id=pk) for pk in Source.objects.values_list("pk", flat=True)]
    for owner in owners:
        rows = RejectedMessage.objects.filter(owner)
        newest = list(rows.order_by("-received_at", "-id").values_list("id", flat=True)[:keep])
        if len(newest) == keep:
            deleted += rows.exclude(id__in=newest).delete()[0]
    deleted += IngestCounter.objects.filter(hour__lt=timezone.now() - COUNTER_KEEP).delete()[0]
    deleted += IngestNotice.objects.filter(hour__lt=timezone.now() - COUNTER_KEEP).delete()[0]
    return deleted
