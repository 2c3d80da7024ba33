"""The broker is never on the request's critical section: after the commit, the edge's
hand-off to the pipeline waits at most its short timeout, whether the broker refuses
connections or stalls (a real socket that accepts and never answers), and loses nothing:
the batch is stored, the failure logged and counted, and the batch handed over once the
broker is back."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from cdp.celery import app as celery_app
from ingest.handoff import PAUSE_AFTER_FAILURE, handoff_forget, handoff_stats
from profiles.models import Event, EventBatch
from tests.outage import StalledServer, closed_port

pytestmark = pytest.mark.django_db

# What a request may take with the broker away: the publish timeout (50 ms) and the
# request's own work (a few ms), with room for a busy CI machine.
BUDGET_S = 0.2


@contextmanager
def broker_at(url: str) -> Iterator[None]:
    """The edge publishes to `url` for real (no eager tasks) inside the block."""
    saved = celery_app.conf.task_always_eager, celery_app.conf.broker_write_url
    celery_app.conf.task_always_eager = False
    celery_app.conf.broker_write_url = url
    handoff_forget()
    try:
        yield
    finally:
        celery_app.conf.task_always_eager, celery_app.conf.broker_write_url = saved


def batch(tag: str, n: int = 20) -> dict[str, object]:
    return {"batch": [{"type": "track", "event": "Viewed", "userId": f"u{i}", "messageId": f"{tag}-{i}"}
                      for i in range(n)]}  # fmt: skip


def timed_post(post, source, body) -> tuple[object, float]:
    start = time.perf_counter()
    response = post("/v1/batch", body, key=source.write_key)
    return response, time.perf_counter() - start


@pytest.mark.parametrize("broker", ["refused", "stalled"])
def test_a_broker_away_costs_the_request_nothing_and_loses_nothing(post, source, broker, caplog):
    before = handoff_stats()
    with StalledServer() as stalled:
        url = f"redis://127.0.0.1:{closed_port() if broker == 'refused' else stalled.port}/0"
        with broker_at(url), caplog.at_level(logging.WARNING, logger="ingest.handoff"):
            first, first_took = timed_post(post, source, batch("a"))
            # Within the pause after a failure, requests do not even try.
            second, second_took = timed_post(post, source, batch("b"))
        if broker == "stalled":
            assert stalled.accepted >= 1, "the publish must have reached the stalled broker"

    assert (first.status_code, first.json()) == (200, {"success": True})
    assert (second.status_code, second.json()) == (200, {"success": True})
    assert first_took < BUDGET_S and second_took < BUDGET_S, (first_took, second_took)
    assert EventBatch.objects.count() == 2 and not Event.objects.exists()  # stored, waiting
    assert "Broker unavailable: 1 batches owed" in caplog.text
    after = handoff_stats()
    assert after.failed == before.failed + 1
    assert after.deferred == before.deferred + 1
    assert after.owed == 2


def test_owed_batches_are_handed_over_with_the_first_request_that_finds_the_broker_back(post, source):
    with broker_at(f"redis://127.0.0.1:{closed_port()}/0"):
        assert post("/v1/batch", batch("a"), key=source.write_key).status_code == 200
    assert handoff_stats().owed == 1
    time.sleep(PAUSE_AFTER_FAILURE)

    # The broker is back (tasks run inline here, as a worker would run them).
    assert post("/v1/batch", batch("b"), key=source.write_key).status_code == 200

    assert Event.objects.filter(message_id__startswith="a-").count() == 20
    assert Event.objects.filter(message_id__startswith="b-").count() == 20
    assert not EventBatch.objects.exists()
    assert handoff_stats().owed == 0
