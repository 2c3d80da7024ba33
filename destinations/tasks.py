"""Celery tasks of destinations. Each takes ids, calls one service, and is safe to run twice:
a drain takes its destination's lease (a second one finds it taken and returns), a sync
resumes from its stored cursor and owes each message once."""

from __future__ import annotations

from datetime import timedelta

from celery import shared_task
from django.core.cache import cache
from django.utils import timezone

from destinations.delivery import destination_drain, drain_needed, drains_due
from destinations.fullsync import full_sync_run
from destinations.models import FullSync
from destinations.outbox import wake, wake_mark
from destinations.services import deliveries_prune


@shared_task(name="destinations.drain", acks_late=True, reject_on_worker_lost=True, soft_time_limit=120,
             time_limit=150)  # fmt: skip
def drain(destination_id: int) -> int:
    """Deliver what the destination is owed; returns how many were tried. When it stopped
    for its time budget with rows still due, it asks for another drain (other destinations'
    drains get the worker in between)."""
    cache.delete(wake_mark(destination_id))  # from now on a new commit asks for another drain
    result = destination_drain(destination_id=destination_id)
    # Rows left due (the budget ran out, or they came while the lease was held): another
    # drain. A paused destination waits for the sweep instead.
    if result.claimed and drain_needed(destination_id, timezone.now()):
        wake([destination_id])
    return result.sent


# One indexed look-up per enabled destination: milliseconds.
@shared_task(name="destinations.sweep", acks_late=True, reject_on_worker_lost=True, soft_time_limit=20, time_limit=30)
def sweep() -> int:
    """Drain the destinations with due rows that no drain holds (retries come due, wakes lost
    to a broker outage), and restart full syncs whose task was lost."""
    due = drains_due()
    wake(due, force=True)
    stale = timezone.now() - timedelta(minutes=2)
    for sync_id in FullSync.objects.filter(status=FullSync.Status.RUNNING, touched_at__lt=stale).values_list(
        "pk", flat=True
    ):
        full_sync.delay(sync_id)
    return len(due)


@shared_task(name="destinations.full_sync", acks_late=True, reject_on_worker_lost=True, soft_time_limit=3000,
             time_limit=3600)  # fmt: skip
def full_sync(sync_id: int) -> int:
    sync = full_sync_run(sync_id=sync_id)
    return sync.done if sync else 0


@shared_task(name="destinations.prune", acks_late=True, reject_on_worker_lost=True, soft_time_limit=600,
             time_limit=900)  # fmt: skip
def prune() -> int:
    return deliveries_prune()
