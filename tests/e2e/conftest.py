"""Fixtures for the end-to-end tests: a real Celery worker, and what it did.

The session fixture `_celery_isolated` (tests/conftest.py) makes every task run inline and
gives the session a queue of its own. `celery_worker` turns eager mode off for one test
and runs a real worker (solo pool, in a thread of this process) on that queue, over
whatever broker CELERY_BROKER_URL names: Redis in CI, kombu's filesystem broker under
`$CDP_VAR_DIR/broker` on a fresh machine.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from celery.contrib.testing.worker import start_worker
from celery.signals import task_failure, task_postrun

from cdp.celery import app as celery_app

# Settings the fixture changes for the test's duration and puts back afterwards.
_WORKER_CONF = {
    "task_always_eager": False,
    # Leave pytest's logging handlers alone.
    "worker_hijack_root_logger": False,
    # No remote control: the tests need no pidbox, and it is one less fanout exchange
    # for the filesystem broker to keep.
    "worker_enable_remote_control": False,
}


@dataclass(frozen=True)
class FinishedTask:
    task_id: str
    name: str
    args: tuple[Any, ...]
    retval: Any
    state: str
    eager: bool


@dataclass
class WorkerProbe:
    """What the embedded worker ran: each finished task (its return value included) and
    each failure, recorded from Celery's signals in the worker's thread."""

    finished: list[FinishedTask] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def tasks(self, name: str) -> list[FinishedTask]:
        with self._lock:
            return [t for t in self.finished if t.name == name]

    def result_of(self, task_id: str, timeout: float = 20.0) -> FinishedTask:
        """Wait for the worker to finish the task `task_id` and return what it did."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                for task in self.finished:
                    if task.task_id == task_id:
                        return task
            time.sleep(0.05)
        raise AssertionError(f"The worker did not run task {task_id} within {timeout:.0f} s.")


@pytest.fixture
def celery_worker(transactional_db: None) -> Iterator[WorkerProbe]:
    """A real Celery worker consuming this session's queue for the test's duration.

    Tasks go through the broker: `.delay()` and the edge's after-commit hand-off publish
    a message, the worker thread receives it and runs the task against the test
    database (hence `transactional_db`: the worker's connection must see committed rows)."""
    saved = {key: celery_app.conf[key] for key in _WORKER_CONF}
    probe = WorkerProbe()

    def on_postrun(sender: Any = None, task_id: str = "", task: Any = None, args: Any = (), retval: Any = None,
                   state: str = "", **_: Any) -> None:  # fmt: skip
        with probe._lock:
            eager = bool(getattr(task.request, "is_eager", False))
            probe.finished.append(FinishedTask(task_id, task.name, tuple(args or ()), retval, state, eager))

    def on_failure(sender: Any = None, task_id: str = "", exception: BaseException | None = None, **_: Any) -> None:
        with probe._lock:
            probe.failures.append(f"{getattr(sender, 'name', sender)}[{task_id}]: {exception!r}")

    task_postrun.connect(on_postrun, weak=False)
    task_failure.connect(on_failure, weak=False)
    celery_app.conf.update(_WORKER_CONF)
    try:
        with start_worker(celery_app, pool="solo", perform_ping_check=False, loglevel="WARNING", shutdown_timeout=30):
            yield probe
    finally:
        celery_app.conf.update(saved)
        task_postrun.disconnect(on_postrun)
        task_failure.disconnect(on_failure)
    assert not probe.failures, f"Tasks failed in the worker: {probe.failures}"
    inline = [t.name for t in probe.finished if t.eager]
    assert not inline, f"These tasks ran inline, not in the worker: {inline}"


@pytest.fixture
def wait_until() -> Callable[..., None]:
    """`wait_until(condition, timeout=20, what="…")`: poll until `condition()` is true."""

    def _wait(condition: Callable[[], bool], *, timeout: float = 20.0, what: str = "the condition") -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                raise AssertionError(f"Timed out after {timeout:.0f} s waiting for {what}.")
            time.sleep(0.1)

    return _wait
