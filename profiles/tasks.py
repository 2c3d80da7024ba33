"""Celery tasks of profiles. Each takes ids (or nothing), calls one service, and is safe to
run twice."""

from __future__ import annotations

from celery import shared_task
from django.db import InterfaceError, OperationalError

from profiles.computed.services import (
    computed_trait_changes_prune,
    computed_trait_compute,
    computed_traits_consume,
    computed_traits_due,
)
from profiles.models import ComputedTrait
from profiles.services.feed import feed_consume, feed_sweep

# What a retry can cure: a lost connection, a deadlock victim.
TRANSIENT = (OperationalError, InterfaceError)


@shared_task(name="profiles.feed_sweep", acks_late=True, reject_on_worker_lost=True, soft_time_limit=45, time_limit=60)
def sweep_feed() -> int:
    """Wake the change feed's consumers that are behind, and prune what all have passed."""
    return feed_sweep()


# It hands over after 20 s, so 90 s is far past any healthy run.
@shared_task(
    name="profiles.consume_feed", acks_late=True, reject_on_worker_lost=True, autoretry_for=TRANSIENT,
    retry_backoff=True, retry_jitter=True, max_retries=5, soft_time_limit=90, time_limit=120,
)  # fmt: skip
def consume_feed() -> int:
    """The computed-traits consumer of the change feed; returns how many changes it took."""
    return feed_consume(consumer="computed_traits", handle=computed_traits_consume)


# A full run over millions of profiles takes minutes; 33 minutes means something is wrong.
@shared_task(
    name="profiles.compute_trait", acks_late=True, reject_on_worker_lost=True, autoretry_for=TRANSIENT,
    retry_backoff=True, retry_jitter=True, max_retries=3, soft_time_limit=33 * 60, time_limit=35 * 60,
)  # fmt: skip
def compute_trait(trait_id: int, scope: str = "full") -> int:
    """Recompute one computed trait (`full`, or `schedule`: what time changed); returns how
    many values changed. A trait gone or disabled is skipped."""
    result = computed_trait_compute(trait_id=trait_id, scope=scope)
    return result.changed if result else 0


@shared_task(
    name="profiles.compute_traits_due", acks_late=True, reject_on_worker_lost=True, soft_time_limit=45, time_limit=60
)
def compute_traits_due() -> int:
    """Enqueue the scheduled recomputes that are due; returns how many."""
    due = computed_traits_due()
    computing = set(ComputedTrait.objects.filter(pk__in=due, status="computing").values_list("pk", flat=True))
    for trait_id in due:
        compute_trait.delay(trait_id, "full" if trait_id in computing else "schedule")
    return len(due)


@shared_task(
    name="profiles.prune_trait_changes", acks_late=True, reject_on_worker_lost=True, soft_time_limit=540, time_limit=600
)
def prune_trait_changes() -> int:
    return computed_trait_changes_prune()
