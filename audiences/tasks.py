"""Celery tasks of audiences. Each takes ids (or nothing), calls one service, and is safe to
run twice."""

from __future__ import annotations

from celery import shared_task
from django.db import InterfaceError, OperationalError

from audiences.services import audience_compute, audiences_consume, audiences_due
from profiles.services.feed import feed_consume

# What a retry can cure: a lost connection, a deadlock victim, a lock wait that timed out.
TRANSIENT = (OperationalError, InterfaceError)


# It hands over after 20 s, so 90 s is far past any healthy run.
@shared_task(
    name="audiences.consume_feed", acks_late=True, reject_on_worker_lost=True, autoretry_for=TRANSIENT,
    retry_backoff=True, retry_jitter=True, max_retries=8, soft_time_limit=90, time_limit=120,
)  # fmt: skip
def consume_feed() -> int:
    """The audiences consumer of the change feed; returns how many changes it took."""
    return feed_consume(consumer="audiences", handle=audiences_consume)


# A full run over millions of profiles takes seconds to minutes; 33 minutes means something is wrong.
@shared_task(
    name="audiences.compute", acks_late=True, reject_on_worker_lost=True, autoretry_for=TRANSIENT,
    retry_backoff=True, retry_jitter=True, max_retries=3, soft_time_limit=33 * 60, time_limit=35 * 60,
)  # fmt: skip
def compute_audience(audience_id: int, cause: str = "time") -> int:
    """Recompute one audience over everyone; returns its size. Gone or disabled: skipped."""
    result = audience_compute(audience_id=audience_id, cause=cause)
    return result.size if result else 0


@shared_task(
    name="audiences.compute_due", acks_late=True, reject_on_worker_lost=True, soft_time_limit=45, time_limit=60
)
def compute_due() -> int:
    """Enqueue the audiences whose schedule has come (windows, funnels, relative dates)."""
    due = audiences_due()
    for audience_id in due:
        compute_audience.delay(audience_id, "time")
    return len(due)
