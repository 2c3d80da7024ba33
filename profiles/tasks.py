"""Celery tasks of profiles. Each takes ids (or nothing), calls one service, and is safe to
run twice."""

from __future__ import annotations

from celery import shared_task

from profiles.services.feed import feed_sweep


@shared_task(name="profiles.feed_sweep", acks_late=True, reject_on_worker_lost=True)
def sweep_feed() -> int:
    """Wake the change feed's consumers that are behind, and prune what all have passed."""
    return feed_sweep()
