"""A real Celery worker (its own process, prefork) survives its broker and its database going
away: each is reached through a TCP proxy that the test closes (connections cut, the port
refused) and opens again on the same port. The worker reconnects by itself, with no restart,
and every message accepted meanwhile reaches the log exactly once."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
from django.conf import settings
from django.db import connection
from django.utils import timezone

from cdp.celery import app as celery_app
from ingest.models import Source
from ingest.services import messages_ingest
from profiles.models import Event, EventBatch
from tests.outage import TcpProxy

ROOT = Path(__file__).resolve().parent.parent.parent
BROKER = settings.CELERY_BROKER_URL
pytestmark = [
    pytest.mark.e2e,
    pytest.mark.postgres,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(not BROKER.startswith("redis://"), reason="needs a Redis broker (set CELERY_BROKER_URL)"),
]
OUTAGE_S = 3.0


def _via(url: str, port: int, *, path: str | None = None) -> str:
    parts = urlsplit(url)
    netloc = f"{parts.username + '@' if parts.username else ''}127.0.0.1:{port}"
    return urlunsplit(parts._replace(netloc=netloc, path=parts.path if path is None else path))


@pytest.fixture
def worker(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], TcpProxy, TcpProxy, Path]]:
    db = connection.settings_dict
    broker = urlsplit(BROKER)
    with TcpProxy((db["HOST"] or "127.0.0.1", int(db["PORT"] or 5432))) as pg, \
            TcpProxy((broker.hostname or "127.0.0.1", broker.port or 6379)) as redis:  # fmt: skip
        env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
        env.update(
            DATABASE_URL=f"postgres://{db['USER']}@127.0.0.1:{pg.port}/{db['NAME']}",
            CELERY_BROKER_URL=_via(BROKER, redis.port), CDP_VAR_DIR=str(tmp_path), PYTHONUNBUFFERED="1",
        )  # fmt: skip
        log = tmp_path / "worker.log"
        queue = celery_app.conf.task_default_queue
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "celery", "-A", "cdp", "worker", "--pool", "prefork", "--concurrency", "1",
                 "-Q", queue, "--hostname", f"outage-{uuid.uuid4().hex[:6]}@%h", "--without-gossip",
                 "--without-mingle", "--without-heartbeat", "--loglevel", "INFO"],
                cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        saved = celery_app.conf.task_always_eager
        celery_app.conf.task_always_eager = False
        try:
            yield proc, pg, redis, log
        finally:
            celery_app.conf.task_always_eager = saved
            proc.terminate()
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, 9)
                proc.wait(5)


def accept(source: Source, tag: str, n: int = 10) -> None:
    """Messages through the edge's one store path: committed, then handed to the broker."""
    items = [{"type": "track", "event": "Viewed", "userId": f"{tag}-u{i % 3}", "messageId": f"{tag}-{i}"}
             for i in range(n)]  # fmt: skip
    outcome = messages_ingest(items=items, write_key=source.write_key, endpoint="batch", received_at=timezone.now())
    assert outcome.status == 200 and outcome.accepted == n


def wait_for(tag: str, n: int, log: Path, timeout: float = 40.0) -> float:
    start = time.monotonic()
    while Event.objects.filter(message_id__startswith=f"{tag}-", profile__isnull=False).count() < n:
        if time.monotonic() - start > timeout:
            raise AssertionError(f"{tag}: not processed within {timeout:.0f} s; worker log:\n{log.read_text()[-4000:]}")
        time.sleep(0.1)
    return time.monotonic() - start


def test_a_worker_reconnects_by_itself_after_its_broker_and_its_database_come_back(worker):
    proc, pg, redis, log = worker
    source = Source.objects.create(name="Outage")
    accept(source, "calm")
    wait_for("calm", 10, log, timeout=60)  # includes the worker's start

    with redis.down():  # the broker goes away: connections cut, the port refused
        accept(source, "broker")  # published to the broker itself, which the worker cannot reach
        time.sleep(OUTAGE_S)
    wait_for("broker", 10, log)

    with pg.down():  # the database goes away under the worker
        accept(source, "database")  # stored by the edge, which still reaches it
        time.sleep(OUTAGE_S)
    wait_for("database", 10, log)

    assert proc.poll() is None, "the worker must not have exited"
    ids = list(Event.objects.values_list("message_id", flat=True))
    assert len(ids) == len(set(ids)) == 30, "every message in the log exactly once"
    assert not EventBatch.objects.exists()
    text = log.read_text()
    assert "Connection to broker lost" in text, "the worker met the broker outage"
    assert "Retry in" in text, "the task met the database outage and retried"
