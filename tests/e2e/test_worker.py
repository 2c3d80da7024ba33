"""The pipeline hand-off with a real Celery worker.

Messages posted to the live server are committed as a batch, its id published to the broker
after the commit, and a real worker (`celery_worker`, tests/e2e/conftest.py) runs
`ingest.process_events`, which writes them to the event log with their profile and deletes
the batch. The broker is whatever the environment names: Redis in CI, the filesystem broker
on a fresh machine.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import pytest
import requests
from django.utils import timezone
from kombu.exceptions import OperationalError

from cdp.celery import app as celery_app
from ingest.handoff import handoff_forget
from ingest.models import Source
from ingest.tasks import SWEEP_GRACE, process_events, sweep_unprocessed
from profiles.models import Event, EventBatch

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def messages(count: int, tag: str) -> list[dict[str, Any]]:
    """`count` valid messages of every type, with message ids starting with `tag`."""
    shapes: list[dict[str, Any]] = [
        {"type": "track", "event": "Order Completed", "properties": {"total": 12.5}},
        {"type": "identify", "traits": {"plan": "pro"}},
        {"type": "page", "name": "Pricing"},
        {"type": "screen", "name": "Home"},
        {"type": "group", "groupId": "acme", "traits": {"seats": 3}},
        {"type": "alias", "previousId": "anon-1"},
    ]
    return [{**shapes[i % len(shapes)], "userId": f"user-{i % 7}", "messageId": f"{tag}-{i}"} for i in range(count)]


def post_batch(live_server: Any, source: Source, batch: list[dict[str, Any]]) -> None:
    response = requests.post(
        f"{live_server.url}/v1/batch", json={"batch": batch}, auth=(source.write_key, ""), timeout=30
    )
    assert response.status_code == 200, response.text
    assert response.json() == {"success": True}


@contextmanager
def broker_down() -> Iterator[None]:
    """Publishing `ingest.process_events` fails as if the broker were unreachable. The
    edge must still answer 200 and leave the events for `ingest.sweep_unprocessed`."""

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise OperationalError("[Errno 111] Connection refused (simulated broker outage)")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(type(celery_app.tasks[process_events.name]), "apply_async", refuse)
        yield
    # The edge owes those batches (it would hand them over with its next request): these
    # tests hand them over themselves, or leave them to the sweep.
    handoff_forget()


def stored(tag: str) -> int:
    return Event.objects.filter(message_id__startswith=f"{tag}-", processed_at__isnull=False).count()


def test_worker_processes_every_event_posted(
    live_server: Any, source: Source, celery_worker: Any, wait_until: Callable[..., None]
) -> None:
    post_batch(live_server, source, messages(120, "b"))
    for path in ("track", "t", "identify"):
        response = requests.post(
            f"{live_server.url}/v1/{path}",
            json={"userId": "solo", "event": "Signed Up", "messageId": f"b-{path}"},
            auth=(source.write_key, ""),
            timeout=30,
        )
        assert response.status_code == 200, response.text

    wait_until(lambda: stored("b") == 123, what="the worker to write all 123 events")
    assert not EventBatch.objects.exists()
    for received_at, processed_at, profile_id in Event.objects.values_list("received_at", "processed_at", "profile"):
        assert processed_at >= received_at and profile_id is not None
    # Four batches went to the worker, each in one task, through the broker.
    wait_until(lambda: sum(len(t.args[0]) for t in celery_worker.tasks(process_events.name)) >= 4,
               what="the last task to finish")  # fmt: skip
    assert sum(t.retval for t in celery_worker.tasks(process_events.name)) == 123


def test_process_events_twice_with_the_same_batch_is_harmless(
    live_server: Any, source: Source, celery_worker: Any, wait_until: Callable[..., None]
) -> None:
    with broker_down():
        post_batch(live_server, source, messages(30, "r"))
    batches = list(EventBatch.objects.values_list("id", flat=True))
    first = process_events.delay(batches)
    assert celery_worker.result_of(first.id).retval == 30
    written = dict(Event.objects.values_list("id", "processed_at"))

    # A redelivered task (acks_late, a worker lost mid-task) runs the same batch again.
    again = [process_events.delay(batches) for _ in range(2)]

    assert [celery_worker.result_of(r.id).retval for r in again] == [0, 0]
    assert dict(Event.objects.values_list("id", "processed_at")) == written


def test_a_task_delivered_twice_processes_each_event_once(
    live_server: Any, source: Source, celery_worker: Any, wait_until: Callable[..., None]
) -> None:
    with broker_down():
        post_batch(live_server, source, messages(25, "d"))
    batches = list(EventBatch.objects.values_list("id", flat=True))
    assert len(batches) == 1 and stored("d") == 0

    both = [process_events.delay(batches) for _ in range(2)]

    done = [celery_worker.result_of(r.id).retval for r in both]
    assert sum(done) == 25, f"each event must be processed exactly once, got {done}"
    assert stored("d") == 25


def test_sweep_reenqueues_batches_whose_task_was_lost(
    live_server: Any, source: Source, celery_worker: Any, wait_until: Callable[..., None]
) -> None:
    # The broker is down when the edge hands the batches over: they are kept (200), and
    # nothing will process them until the sweep finds them.
    with broker_down():
        post_batch(live_server, source, messages(40, "old"))
        post_batch(live_server, source, messages(5, "new"))
    old, _young = EventBatch.objects.order_by("id")
    stale = timezone.now() - SWEEP_GRACE - timedelta(minutes=8)
    EventBatch.objects.filter(id=old.id).update(received_at=stale)

    sweep = sweep_unprocessed.delay()

    assert celery_worker.result_of(sweep.id).retval == 1
    # The younger batch may still have a task in flight: not swept. The swept task takes
    # it along (the backlog claim): its own task, once delivered, finds nothing left.
    wait_until(lambda: stored("old") == 40, what="the swept events to be written")
    assert stored("new") == 5
    wait_until(lambda: bool(celery_worker.tasks(process_events.name)), what="the swept task to finish")
    assert [task.args[0] for task in celery_worker.tasks(process_events.name)] == [[old.id]]


def test_events_from_a_second_source_are_processed_too(
    live_server: Any, source: Source, celery_worker: Any, wait_until: Callable[..., None]
) -> None:
    other = Source.objects.create(name=f"App {uuid.uuid4().hex[:6]}")
    post_batch(live_server, source, messages(10, "s1"))
    post_batch(live_server, other, messages(10, "s1"))  # same ids, another source: stored too

    wait_until(lambda: stored("s1") == 20, what="both sources' events to be written")


@pytest.mark.django_db(transaction=True)
def test_a_worker_keeps_its_database_connection_across_tasks():
    """Celery's Django fixup reconnects to the database around every task unless
    CELERY_DB_REUSE_MAX is set; a new PostgreSQL connection per task cost more than the
    pipeline's work on 100 events. Our own pre-task hook still drops an obsolete one."""
    from types import SimpleNamespace

    from celery.fixups.django import DjangoWorkerFixup
    from django.db import connection

    from cdp.celery import app

    fixup = DjangoWorkerFixup(app)
    task = SimpleNamespace(request=SimpleNamespace(is_eager=False))
    connection.ensure_connection()
    before = connection.connection
    for _ in range(10):
        fixup.on_task_prerun(task)
        fixup.on_task_postrun(task)
    assert connection.connection is before


def test_an_event_reaches_a_computed_trait_and_an_audience_through_the_worker(
    live_server: Any, source: Source, celery_worker: Any, wait_until: Callable[..., None]
) -> None:
    """The whole way with a real worker: the edge's 200, resolution, the change feed woken at
    its commit, the computed traits consumer, then the audiences consumer on the score."""
    from audiences.models import AudienceChange, AudienceMember
    from audiences.services import audience_compute, audience_create
    from profiles.computed.services import computed_trait_compute, computed_trait_create
    from profiles.models import ComputedTraitValue, Identity

    trait = computed_trait_create(data={"key": "clicks", "type": "counter", "event": "Email Link Clicked"})
    computed_trait_compute(trait_id=trait.pk)
    audience = audience_create(data={"key": "clickers", "rule": {"trait": "clicks", "op": ">=", "value": 2}})
    audience_compute(audience_id=audience.pk, cause="rule v1")
    post_batch(live_server, source, [{"type": "track", "userId": "ada", "event": "Email Link Clicked",
                                      "messageId": f"w-{i}"} for i in range(2)])  # fmt: skip
    wait_until(lambda: AudienceMember.objects.filter(audience=audience).exists(), what="ada to enter the audience")
    ada = Identity.objects.get(kind="user_id", value="ada").profile_id
    assert ComputedTraitValue.objects.get(trait=trait, profile_id=ada).value == 2
    assert AudienceChange.objects.get(audience=audience, profile_id=ada).cause == "trait clicks"
