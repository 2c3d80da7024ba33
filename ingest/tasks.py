"""Celery tasks of the edge. Each takes ids, calls one service and is safe to run twice, so
every one is acknowledged late (settings: a task in flight on a worker that dies runs again).

Retries name transient errors only: the database went away or timed out (`OperationalError`,
which covers lock and statement timeouts, deadlocks and serialisation failures, and
`InterfaceError`, a connection already closed), and resolution's own two conflicts with
another worker. An `IntegrityError` or a `ProgrammingError` is a bug that no retry mends: the
task fails, its batches wait, and the sweep hands them over again later.
"""

from __future__ import annotations

from datetime import timedelta

from celery import shared_task
from django.db import InterfaceError, OperationalError
from django.utils import timezone

from ingest import debugger, pipeline
from profiles.selectors import batches_waiting_ids
from profiles.services.resolution import DuplicateInFlight, ResolutionContention

# Batches still waiting this long after they were accepted lost their task (a worker
# crash, a broker restart); younger ones may still be in flight.
SWEEP_GRACE = timedelta(minutes=2)
# One sweep re-enqueues at most this many batches, in tasks of SWEEP_CHUNK: five batches
# of a hundred messages are a few hundred milliseconds of pipeline work.
SWEEP_LIMIT = 500
SWEEP_CHUNK = 5

TRANSIENT_ERRORS = (OperationalError, InterfaceError, ResolutionContention, DuplicateInFlight)
# Full-jitter backoff capped at 15 s, 16 times: a task keeps trying through a database
# outage of about two minutes (the sum of the capped delays is ~3.5 minutes, half that on
# average), and retries within 15 s of the database's return, so the pipeline catches up
# at once. Past that the sweep hands the batches over again.
RETRY_BACKOFF_MAX = 15
MAX_RETRIES = 16
# A task resolves its batches plus, under load, up to CLAIM_BATCH (1,000) messages of
# backlog, in transactions of ~1,000 messages: 0.1-0.3 s each on the 2-core machine, up to
# 20 s when one waits on a lock (resolution's lock timeout). Two minutes is a task gone wrong.
PROCESS_SOFT_TIME_LIMIT = 120
PROCESS_TIME_LIMIT = 150


@shared_task(
    name="ingest.process_events",
    acks_late=True,
    reject_on_worker_lost=True,
    autoretry_for=TRANSIENT_ERRORS,
    retry_backoff=True,
    retry_backoff_max=RETRY_BACKOFF_MAX,
    retry_jitter=True,
    max_retries=MAX_RETRIES,
    soft_time_limit=PROCESS_SOFT_TIME_LIMIT,
    time_limit=PROCESS_TIME_LIMIT,
)
def process_events(batch_ids: list[int]) -> int:
    """Run the pipeline over accepted batches; returns how many messages it processed."""
    return pipeline.events_process(batch_ids=batch_ids).processed


# Reading 500 ids and publishing 100 tasks takes milliseconds; a minute means the broker stalls.
@shared_task(name="ingest.sweep_unprocessed", acks_late=True, soft_time_limit=60, time_limit=90)
def sweep_unprocessed() -> int:
    """Re-enqueue batches left waiting; returns how many."""
    ids = batches_waiting_ids(received_before=timezone.now() - SWEEP_GRACE, limit=SWEEP_LIMIT)
    for start in range(0, len(ids), SWEEP_CHUNK):
        process_events.delay(ids[start : start + SWEEP_CHUNK])
    return len(ids)


# One DELETE per source of what exceeds its newest 1,000 refusals: seconds at most, even
# after an abusive client filled it; runs every 10 minutes, so 5 minutes is stuck.
@shared_task(name="ingest.trim_debugger", acks_late=True, soft_time_limit=300, time_limit=360)
def trim_debugger() -> int:
    """Bound the ingest debugger; returns how many rows it deleted."""
    return debugger.debugger_trim()
