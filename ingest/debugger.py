"""Keeps the ingest debugger bounded, so it can never fill the disk."""

from __future__ import annotations

from datetime import timedelta

from django.db.models import Q
from django.utils import timezone

from ingest.models import IngestCounter, IngestNotice, RejectedMessage, Source, WebhookToken
from ingest.webhooks import REPLAY_WINDOW_SECONDS

# Enough to debug an integration (a page of each refusal reason), small enough to ignore:
# 1,000 rows of at most 2 KB is 2 MB per source.
REJECTED_KEEP_PER_SOURCE = 1000
COUNTER_KEEP = timedelta(days=30)


def debugger_trim(*, keep: int = REJECTED_KEEP_PER_SOURCE) -> int:
    """Delete all but the newest `keep` refused messages per source (and of the unknown
    source), counters and notices older than 30 days, and Mailgun tokens past the replay
    window. Idempotent. Returns the rows deleted."""
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
    # A used Mailgun token matters only while its timestamp is accepted (twice the window:
    # a timestamp up to the window in the future is accepted too).
    expired = timezone.now() - timedelta(seconds=2 * REPLAY_WINDOW_SECONDS)
    deleted += WebhookToken.objects.filter(seen_at__lt=expired).delete()[0]
    return deleted
