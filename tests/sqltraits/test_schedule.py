"""The schedule: beat's check queues a run for each enabled definition whose `every_hours`
has passed (never two at once), hands lost runs over again and marks runs whose worker died
as failed. The tasks are acknowledged late, time-limited, and safe to run twice."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from cdp.beat import SCHEDULE
from sqltraits.models import SqlTraitRun
from sqltraits.runner import RUN_STALE_AFTER
from sqltraits.services import QUEUED_STALE_AFTER, sql_trait_create, sql_traits_due
from sqltraits.tasks import enqueue_due, run_sql_trait

pytestmark = pytest.mark.django_db


def define(key: str, **fields):
    return sql_trait_create(data={"key": key, "query": f"SELECT 'u1' AS user_id, 1 AS {key}", **fields})


def finish(run_id: int, at) -> None:
    SqlTraitRun.objects.filter(pk=run_id).update(status="succeeded", created_at=at, started_at=at, finished_at=at)


def test_each_definition_runs_every_its_hours_and_never_twice_at_once():
    now = timezone.now()
    define("daily", every_hours=24)
    define("hourly", every_hours=1)
    define("off", enabled=False)

    def due(hours: float) -> list[str]:
        ids = sql_traits_due(now=now + timedelta(hours=hours))
        keys = sorted(SqlTraitRun.objects.filter(pk__in=ids).values_list("trait__key", flat=True))
        for run_id in ids:
            finish(run_id, now + timedelta(hours=hours))
        return keys

    assert sql_traits_due(now=now) != [] and sql_traits_due(now=now) == []  # queued already: not again
    SqlTraitRun.objects.update(status="succeeded", created_at=now)
    assert due(0.5) == []
    assert due(1) == ["hourly"]
    assert due(23) == ["hourly"]
    assert due(24) == ["daily", "hourly"]
    assert set(SqlTraitRun.objects.values_list("trigger", flat=True)) == {"schedule"}
    assert not SqlTraitRun.objects.filter(trait__key="off").exists()


def test_a_run_whose_worker_died_is_failed_and_a_lost_task_handed_over_again():
    now = timezone.now()
    trait = define("stuck", every_hours=720)
    (run_id,) = sql_traits_due(now=now)
    assert sql_traits_due(now=now + QUEUED_STALE_AFTER + timedelta(seconds=5)) == [run_id]  # its task was lost
    SqlTraitRun.objects.filter(pk=run_id).update(status="running", started_at=now)
    assert sql_traits_due(now=now + RUN_STALE_AFTER - timedelta(minutes=1)) == []
    sql_traits_due(now=now + RUN_STALE_AFTER + timedelta(minutes=1))
    run = SqlTraitRun.objects.get(pk=run_id)
    assert run.status == "failed" and run.error.startswith("Interrupted")
    assert trait.runs.count() == 1  # due again only after its 720 hours


def test_the_beat_schedule_checks_every_five_minutes():
    assert SCHEDULE["sqltraits-enqueue-due"] == {"task": "sqltraits.enqueue_due", "schedule": timedelta(minutes=5)}


def test_the_tasks_are_acknowledged_late_and_time_limited():
    for task in (run_sql_trait, enqueue_due):
        assert task.acks_late and task.reject_on_worker_lost, task.name
        assert 0 < task.soft_time_limit < task.time_limit, task.name
    assert run_sql_trait.name == "sqltraits.run" and not getattr(run_sql_trait, "autoretry_for", ())


def test_the_due_task_runs_what_is_due_and_running_it_twice_changes_nothing(django_capture_on_commit_callbacks):
    define("once", every_hours=12)
    with django_capture_on_commit_callbacks(execute=True):
        assert enqueue_due() == 1  # the run happens inline (eager tasks)
        assert enqueue_due() == 0
    run = SqlTraitRun.objects.get()
    assert (run.status, run.people_sent) == ("succeeded", 1), run.error
    assert run_sql_trait(run.pk) == 0  # delivered again: already done
