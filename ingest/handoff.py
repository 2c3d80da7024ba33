"""The edge's hand-off of accepted batches to the pipeline, after the commit: never on the
request's critical section.

A request's batch is already committed when it is published, so a broker that refuses,
stalls or is gone must cost the request almost nothing and lose nothing:

- each publish goes over this process's own broker connection with short connect and socket
  timeouts (`CDP_BROKER_PUBLISH_TIMEOUT`, 50 ms), and no retry;
- a batch whose publish fails is *owed*: kept in this process, and published with the next
  request that finds the broker back;
- for `PAUSE_AFTER_FAILURE` after a failure no request tries (each would wait the timeout),
  they only owe their batches;
- every failure is logged (with what this process owes) and counted (`handoff_stats`, shown
  by `/readyz`).

What a process owes is bounded (`OWED_LIMIT`), and lost if the process dies: the sweep
(`ingest.sweep_unprocessed`, every minute) still hands over every batch waiting for more
than two minutes, wherever it was owed.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from kombu.exceptions import OperationalError as BrokerError

logger = logging.getLogger(__name__)

# After a failed publish, requests skip the broker for this long: during an outage one
# request a second per process pays the timeout, the others nothing.
PAUSE_AFTER_FAILURE = 1.0
# Batches one process may owe (ids, ~100 messages each): 20 minutes of a 2,000-messages/s
# process's traffic. Past it the oldest are forgotten, and left to the sweep.
OWED_LIMIT = 25_000
# Owed batches a request publishes once the broker is back, as tasks of OWED_PER_TASK
# batches: 5 publishes of ~0.1 ms; a 20 s outage at the identity benchmark's rate
# (~80 requests/s) leaves ~1,600 batches, which the next ~65 requests hand over.
OWED_PER_REQUEST = 25
OWED_PER_TASK = 5
# Errors a publish raises when the broker is away: kombu's, and the socket's own.
BROKER_ERRORS: tuple[type[BaseException], ...] = (BrokerError, OSError)
try:
    import redis

    BROKER_ERRORS += (redis.RedisError,)
except ImportError:  # pragma: no cover (redis is pinned)
    pass


@dataclass(frozen=True, slots=True)
class HandoffStats:
    """This process's hand-offs since it started."""

    published: int
    failed: int  # publishes that failed (each left its batches owed)
    deferred: int  # batches owed without a try, during the pause after a failure
    owed: int  # batches owed now
    forgotten: int  # owed batches dropped past OWED_LIMIT (the sweep hands them over)


class _State:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.owed: deque[int] = deque()
        self.paused_until = 0.0
        self.published = self.failed = self.deferred = self.forgotten = 0

    def owe(self, batch_ids: Sequence[int]) -> None:
        with self.lock:
            self.owed.extend(batch_ids)
            while len(self.owed) > OWED_LIMIT:
                self.owed.popleft()
                self.forgotten += 1

    def take_owed(self) -> list[int]:
        with self.lock:
            return [self.owed.popleft() for _ in range(min(OWED_PER_REQUEST, len(self.owed)))]


_state = _State()
_local = threading.local()  # a kombu connection is not thread-safe: one per thread (gthread)


def _connection() -> Any:
    """This thread's broker connection for publishing, with the short timeouts (made anew
    after a fork, or when the broker URL changed)."""
    from ingest.tasks import process_events

    app = process_events.app
    url = app.conf.broker_write_url or app.conf.broker_url
    conn = getattr(_local, "connection", None)
    if conn is None or getattr(_local, "made_for", None) != (os.getpid(), url):
        timeout = float(settings.CDP_BROKER_PUBLISH_TIMEOUT)
        conn = app.connection_for_write(
            url,
            connect_timeout=timeout,
            transport_options={
                "socket_connect_timeout": timeout, "socket_timeout": timeout,
                # One try: kombu would otherwise retry the connection for ever.
                "max_retries": 0, "connect_retries_timeout": timeout,
            },
        )  # fmt: skip
        _local.connection, _local.made_for = conn, (os.getpid(), url)
    return conn


def _drop_connection() -> None:
    conn = getattr(_local, "connection", None)
    _local.connection = None
    if conn is not None:
        try:
            conn.collect()  # close without talking to the broker, which may not answer
        except Exception:  # a broken connection may fail to close; it is dropped either way
            logger.debug("Dropping a broken broker connection failed.", exc_info=True)


def _publish(batch_ids: list[int]) -> None:
    from ingest.tasks import process_events

    # `connection` is passed on to send_task, which publishes over it (celery-types omits it).
    process_events.apply_async((batch_ids,), connection=_connection(), retry=False)  # type: ignore[call-arg]


def enqueue_pipeline(batch_ids: list[int]) -> None:
    """Hand accepted (committed) batches to the pipeline, and what this process owes with
    them when the broker is back. Never raises and never waits more than the publish timeout:
    a failed publish leaves the batches owed (published with a later request, or by the
    sweep). Publishing twice is harmless: the pipeline finds a batch gone and does nothing."""
    state = _state
    if time.monotonic() < state.paused_until:
        state.owe(batch_ids)
        with state.lock:
            state.deferred += len(batch_ids)
        return
    try:
        _publish(batch_ids)
    except BROKER_ERRORS:
        _failed(batch_ids)
        return
    with state.lock:
        state.published += 1
    owed = state.take_owed()
    for start in range(0, len(owed), OWED_PER_TASK):
        chunk = owed[start : start + OWED_PER_TASK]
        try:
            _publish(chunk)
        except BROKER_ERRORS:
            _failed([*chunk, *owed[start + OWED_PER_TASK :]])
            return
        with state.lock:
            state.published += 1
    if owed:
        logger.info("Broker back: handed over %d owed batches; %d still owed.", len(owed), len(state.owed))


def _failed(batch_ids: list[int]) -> None:
    state = _state
    _drop_connection()
    state.owe(batch_ids)
    with state.lock:
        state.failed += 1
        state.paused_until = time.monotonic() + PAUSE_AFTER_FAILURE
        owed = len(state.owed)
    logger.warning(
        "Broker unavailable: %d batches owed by this process (handed over when it is back, or by the sweep).",
        owed,
        exc_info=True,
    )


def handoff_stats() -> HandoffStats:
    state = _state
    with state.lock:
        return HandoffStats(state.published, state.failed, state.deferred, len(state.owed), state.forgotten)


def handoff_forget() -> int:
    """Forget what this process owes and end any pause; returns how many batches it owed.
    The sweep still hands them over. For a shell, or a test that simulated an outage."""
    state = _state
    with state.lock:
        owed = len(state.owed)
        state.owed.clear()
        state.paused_until = 0.0
    return owed
