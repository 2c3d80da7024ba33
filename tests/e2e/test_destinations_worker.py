"""Destinations with a real Celery worker: an audience entry posted to the live server reaches
a webhook through the broker (the pipeline, the audiences consumer, the drain woken at the
commit), a failing destination retries through beat's sweep while a healthy one is unaffected,
and a drain redelivered to the worker (acks_late) sends nothing twice."""

from __future__ import annotations

from typing import Any

import pytest
import requests

from audiences.services import audience_create
from destinations.models import Delivery
from destinations.services import destination_create
from destinations.tasks import drain, sweep
from ingest.models import Source
from tests.destinations.standins import Failure, Sink

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def sinks():
    made = [Sink(), Sink()]
    yield made
    for s in made:
        s.close()


def test_an_entry_reaches_webhooks_through_the_worker_and_a_failing_one_retries(
    celery_worker: Any, live_server: Any, sinks: list[Sink], wait_until: Any
) -> None:
    good, bad = sinks
    bad.fail(1, 503)
    for name, sink in (("Good", good), ("Bad", bad)):
        destination_create(data={"name": name, "kind": "webhook", "audiences": "all",
                                 "settings": {"urls": [f"{sink.url}/hook"]}})  # fmt: skip
    source = Source.objects.create(name="Web")
    audience_create(data={"key": "buyers", "rule": {"event": "Order Completed"}})
    wait_until(lambda: celery_worker.tasks("audiences.compute"), what="the audience's first computation")
    answer = requests.post(f"{live_server.url}/v1/batch", auth=(source.write_key, ""), timeout=30, json={"batch": [
        {"type": "identify", "userId": "ann", "traits": {"email": "ann@example.com"}},
        {"type": "track", "userId": "ann", "event": "Order Completed"}]})  # fmt: skip
    assert answer.status_code == 200
    wait_until(lambda: len(good.requests_to("^/hook")) == 2, what="the healthy webhook's identify and track")
    assert [r.json()["type"] for r in good.requests_to("^/hook")] == ["identify", "track"]
    wait_until(lambda: Delivery.objects.filter(destination__name="Bad", attempts=1).exists(), what="the 503")
    wait_until(lambda: sweep.delay() and Delivery.objects.filter(destination__name="Bad", status="delivered").count()
               == 2, timeout=30, what="the retry, through the sweep")  # fmt: skip
    assert [r.json()["messageId"] for r in bad.requests_to("^/hook")][1:] == [
        r.json()["messageId"] for r in good.requests_to("^/hook")
    ]  # the same messages, the first one retried


def test_a_drain_run_twice_sends_nothing_twice(celery_worker: Any, sinks: list[Sink], wait_until: Any) -> None:
    from destinations.outbox import Outgoing, deliveries_enqueue

    sink = sinks[0]
    sink.always = Failure(200, hang=0.05)  # slow enough for the drains to overlap
    dest = destination_create(data={"name": "Slow", "kind": "webhook", "audiences": "all",
                                    "settings": {"urls": [f"{sink.url}/hook"]}})  # fmt: skip
    deliveries_enqueue(messages=[Outgoing(kind="audience", subject="a", person=f"p{i}", message={
        "type": "identify", "messageId": f"m{i}", "traits": {"a": True}}) for i in range(20)])  # fmt: skip
    for _ in range(3):
        drain.delay(dest.pk)
    wait_until(lambda: Delivery.objects.filter(status="delivered").count() == 20, what="every delivery")
    ids = [r.json()["messageId"] for r in sink.requests_to("^/hook")]
    assert sorted(ids) == sorted(f"m{i}" for i in range(20))
