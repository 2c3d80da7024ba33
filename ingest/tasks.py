"""Celery tasks of the edge. Each takes ids, calls one service and is safe to run twice."""

from __future__ import annotations

from datetime import timedelta

from celery import shared_task
from django.db import DatabaseError
from django.utils import timezone

from ingest import debugger, pipeline
from profiles.selectors import batches_waiting_ids

# Batches still waiting this long after they were accepted lost their task (a worker
# crash, a broker restart); younger ones may still be in flight.
SWEEP_GRACE = timedelta(minutes=2)
# One sweep re-enqueues at most this many batches, in tasks of SWEEP_CHUNK: five batches
# of a hundred messages are a few hundred milliseconds of pipeline work.
SWEEP_LIMIT = 500
SWEEP_CHUNK = 5


@shared_task(
    name="ingest.process_events",
    acks_late=True,
    reject_on_worker_lost=True,
    autoretry_for=(DatabaseError,),
    retry_backoff=True,
    retry_jitter=True,
    max_retries=8,
)
def process_events(batch_ids: list[int]) -> int:
    """Run the pipeline over accepted batches; returns how many messages it processed."""
    return pipeline.events_process(batch_ids=batch_ids).processed


@shared_task(name="ingest.sweep_unprocessed")
def sweep_unprocessed() -> int:
    """Re-enqueue batches left waiting; returns how many."""
    ids = batches_waiting_ids(received_before=timezone.now() - SWEEP_GRACE, limit=SWEEP_LIMIT)
    for start in range(0, len(ids), SWEEP_CHUNK):
        process_events.delay(ids[start : start + SWEEP_CHUNK])
    return len(ids)


@shared_task(name="ingest.trim_debugger")
def trim_debugger() -> int:
    """Bound the ingest debugger; returns how many rows it deleted."""
    return debugger.debugger_trim()
