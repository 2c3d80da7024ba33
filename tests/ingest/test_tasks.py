"""The edge's tasks: each has a time limit and is acknowledged late, and retries name
transient errors only (a lost or refused database, a timeout, resolution's conflicts), never
a bug such as an IntegrityError, which no retry mends."""

from __future__ import annotations

from django.db import DatabaseError, IntegrityError, InterfaceError, OperationalError, ProgrammingError

from ingest.tasks import process_events, sweep_unprocessed, trim_debugger
from profiles.services.resolution import DuplicateInFlight, ResolutionContention


def test_every_task_has_a_time_limit_and_is_acknowledged_late():
    for task in (process_events, sweep_unprocessed, trim_debugger):
        assert task.acks_late, task.name
        assert 0 < task.soft_time_limit < task.time_limit, task.name


def test_only_transient_errors_are_retried():
    retried = process_events.autoretry_for
    assert set(retried) == {OperationalError, InterfaceError, ResolutionContention, DuplicateInFlight}
    for bug in (IntegrityError, ProgrammingError, DatabaseError):
        assert not issubclass(bug, retried), f"{bug.__name__} would be retried"
    assert process_events.max_retries and process_events.retry_backoff_max <= 15
