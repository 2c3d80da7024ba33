"""Celery tasks of SQL traits. Each takes ids (or nothing), calls one service, and is safe to
run twice: a run is claimed before it starts, so a redelivered task does nothing.

Not retried: a run that fails is recorded with its error, and the schedule runs the
definition again `every_hours` later (or someone asks for a run). A run whose worker died is
marked failed by the schedule's check once past the time limit."""

from __future__ import annotations

from celery import shared_task

from sqltraits.runner import RUN_SOFT_TIME_LIMIT, RUN_TIME_LIMIT, sql_trait_run
from sqltraits.services import enqueue_run, sql_traits_due


@shared_task(
    name="sqltraits.run", acks_late=True, reject_on_worker_lost=True, soft_time_limit=RUN_SOFT_TIME_LIMIT,
    time_limit=RUN_TIME_LIMIT,
)  # fmt: skip
def run_sql_trait(run_id: int) -> int:
    """Run one queued SQL trait run; returns how many identify calls it sent (0 when it was
    not queued: gone, or already taken)."""
    run = sql_trait_run(run_id=run_id)
    return run.people_sent + run.people_nulled if run else 0


# A few reads and inserts per definition: well under a second for hundreds of them.
@shared_task(
    name="sqltraits.enqueue_due", acks_late=True, reject_on_worker_lost=True, soft_time_limit=45, time_limit=60
)
def enqueue_due() -> int:
    """Queue the runs the schedule owes (and re-enqueue runs whose task was lost); returns how many."""
    due = sql_traits_due()
    for run_id in due:
        enqueue_run(run_id=run_id)
    return len(due)
