"""The profile change feed: how what changes in profiles reaches the floors above.

Every transaction that changes what is known about a person ends with `feed_write`: one
`ProfileChange` row per changed profile, in that same transaction, so a change is in the
feed exactly when it is committed. Consumers (computed traits here, audiences above) read
the feed in id order, each from its own durable cursor (`FeedConsumer.position`), in a
Celery task: `feed_consume` locks the cursor, hands the next rows to the consumer and moves
the cursor in one transaction, so a killed worker loses nothing and a redelivered task
finds the rows already passed. Consumers are woken after each commit (`feed_wake`, at most
once per `WAKE_SECONDS` each: a running consumer reads on until the feed is empty) and
swept by beat (`feed_sweep`, which also prunes what every consumer has passed).

Why ids are a safe cursor: ids come from a sequence when a row is inserted, and transactions
commit in another order, so a reader could see id 12 committed while id 11 is still to
come, move its cursor past 11, and never see it. Here every writer inserts its rows last,
holding the feed lock (a transaction-level advisory lock) from the insert to its commit:
no one can take an id until the previous writer's rows are visible, so the visible rows
are always every row up to some id. (SQLite's transactions run one writer at a time.)
The lock is held for the insert and the commit only; resolution commits without waiting
for the disk, so that is well under a millisecond.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import redis
from celery import current_app
from django.apps import apps
from django.core.cache import cache
from django.db import connection, transaction
from django.utils import timezone
from kombu.exceptions import OperationalError as BrokerError

from profiles.db import pg_cursor
from profiles.models import FeedConsumer, ProfileChange
from profiles.services.bulk import rows_insert

logger = logging.getLogger(__name__)

_FEED_LOCK = (0x43445052, 3)  # "CDPR", 3
_TABLE = ProfileChange._meta.db_table
# A consumer is woken at most this often by commits (a running one reads on until the feed
# is empty, and beat sweeps every few seconds in case a wake was lost).
WAKE_SECONDS = 2
# Changes a consumer takes per transaction: a few hundred profiles' worth of work, a few
# hundred milliseconds, short enough to hold the cursor lock.
FEED_BATCH = 500
# A consumer task hands over (wakes a successor and returns) after this long, well inside
# its time limit.
CONSUME_BUDGET_SECONDS = 20.0


@dataclass(slots=True)
class Change:
    """What one transaction changed about one profile (see `ProfileChange.what`)."""

    profile_id: int
    cause: str
    events: Counter[str] = field(default_factory=Counter)
    traits: set[str] = field(default_factory=set)
    computed: set[str] = field(default_factory=set)
    identifiers: set[str] = field(default_factory=set)
    removed: set[str] = field(default_factory=set)
    merged: set[int] = field(default_factory=set)
    merged_into: int | None = None
    split: set[int] = field(default_factory=set)
    split_from: int | None = None
    rebuilt: bool = False
    deleted: bool = False
    everyone: bool = False  # profile 0: every profile may have changed (a full recompute)

    def as_json(self) -> dict[str, Any]:
        """Only what applies; `{}` when nothing changed."""
        out: dict[str, Any] = {}
        if self.events:
            out["events"] = dict(self.events)
        for name in ("traits", "computed", "identifiers", "removed"):
            if values := getattr(self, name):
                out[name] = sorted(values)
        for name in ("merged", "split"):
            if ids := getattr(self, name):
                out[name] = sorted(ids)
        for name in ("merged_into", "split_from"):
            if (value := getattr(self, name)) is not None:
                out[name] = value
        if self.rebuilt:
            out["rebuilt"] = True
        if self.deleted:
            out["deleted"] = True
        if self.everyone:
            out["all"] = True
        if out:
            out["cause"] = self.cause
        return out


class Changes(dict[int, Change]):
    """The changes a transaction collects, one per profile."""

    def __init__(self, cause: str) -> None:
        super().__init__()
        self.cause = cause

    def of(self, profile_id: int) -> Change:
        change = self.get(profile_id)
        if change is None:
            change = self[profile_id] = Change(profile_id, self.cause)
        return change


def feed_write(changes: Iterable[Change], *, at: datetime | None = None) -> int:
    """Append the changes to the feed: the last writes of the caller's transaction (it
    holds the feed lock until it commits). Consumers are woken after the commit. Returns
    how many rows it wrote."""
    rows = [(c.profile_id, what) for c in changes if (what := c.as_json())]
    if not rows:
        return 0
    assert connection.in_atomic_block, "the feed is written in the transaction of the change"
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s, %s)", _FEED_LOCK)
    rows_insert(
        table=_TABLE,
        columns=[("profile_id", "bigint"), ("what", "jsonb")],
        constants=[("at", "timestamptz", at or timezone.now())],
        rows=rows,
    )
    transaction.on_commit(feed_wake)
    return len(rows)


@dataclass(frozen=True, slots=True)
class FeedRow:
    id: int
    profile_id: int
    at: datetime
    what: dict[str, Any]


def feed_read(*, after: int, limit: int) -> list[FeedRow]:
    """The next `limit` changes after id `after`, in order."""
    if connection.vendor == "postgresql":
        with pg_cursor(parse_json=True, binary=True) as cursor:
            cursor.execute(
                f"SELECT id, profile_id, at, what FROM {_TABLE} WHERE id > %b ORDER BY id LIMIT %b", [after, limit]
            )
            return [FeedRow(*row) for row in cursor.fetchall()]
    rows = ProfileChange.objects.filter(id__gt=after).order_by("id").values_list("id", "profile_id", "at", "what")
    return [FeedRow(*row) for row in rows[:limit]]


# --- Consumers ---------------------------------------------------------------------------------


_CACHE_ERRORS = (redis.RedisError, OSError, ValueError)


def _wake_key(name: str) -> str:
    return f"cdp:feed-wake:{name}"


# The consumers, registered by their apps at startup (`AppConfig.ready`): name -> task.
_REGISTRY: dict[str, str] = {}
_consumers: tuple[float, list[tuple[str, str]]] = (0.0, [])


def feed_consumer_register(name: str, task: str) -> None:
    """Make a consumer known to the feed: it is woken by commits and swept by beat, and its
    cursor row is made (from the start) if it is missing. Its app's migration makes the row
    first, from the feed's end at that time."""
    _REGISTRY[name] = task


def _registered() -> list[tuple[str, str]]:
    """(name, task) of every consumer: the registered ones, and any other cursor row (read
    at most every 30 s: they change with releases)."""
    global _consumers
    if time.monotonic() - _consumers[0] > 30 or not _consumers[1]:
        rows = dict(FeedConsumer.objects.order_by("name").values_list("name", "task"))
        _consumers = (time.monotonic(), sorted({**rows, **_REGISTRY}.items()))
    return _consumers[1]


def _ensure_registered() -> None:
    """Cursor rows for registered consumers that have none (from the start: a handler is
    idempotent, and nothing the feed holds is skipped)."""
    missing = set(_REGISTRY) - set(FeedConsumer.objects.filter(name__in=list(_REGISTRY)).values_list("name", flat=True))
    for name in sorted(missing):
        FeedConsumer.objects.get_or_create(name=name, defaults={"task": _REGISTRY[name], "position": 0})


def _task(name: str) -> Any:
    """The registered task `name`, importing the apps' `tasks` modules when it is not yet
    known (a web process imports none by itself). Not Celery's `import_default_modules`: in
    a worker its signal re-runs `django.setup()`, which resets the worker's logging."""
    task = current_app.tasks.get(name)
    if task is None:
        for config in apps.get_app_configs():
            module = f"{config.name}.tasks"
            if importlib.util.find_spec(module) is not None:
                importlib.import_module(module)
        task = current_app.tasks.get(name)
    return task


def feed_wake(names: Sequence[str] | None = None) -> None:
    """Enqueue the consumers' tasks (all, or `names`), each at most once per
    `WAKE_SECONDS`. Never raises: a broker that is down leaves the work to beat's sweep."""
    for name, task_name in _registered():
        if names is not None and name not in names:
            continue
        try:
            if not cache.add(_wake_key(name), 1, timeout=WAKE_SECONDS):
                continue  # woken a moment ago: that task, or the one running, reads this change too
        except _CACHE_ERRORS:  # a cache that is down must not block the wake: wake without the guard
            logger.warning("Feed wake without the cache's guard.", exc_info=True)
        task = _task(task_name)
        try:
            if task is not None:
                task.apply_async()
            else:
                current_app.send_task(task_name)
        except (BrokerError, OSError):  # the broker is down: beat's sweep wakes it later
            logger.warning("Could not wake feed consumer %s; beat's sweep will.", name, exc_info=True)


Handler = Callable[[list[FeedRow]], None]


def feed_consume(*, consumer: str, handle: Handler, batch: int = FEED_BATCH) -> int:
    """Feed the changes after `consumer`'s cursor to `handle`, `batch` at a time, until
    none is left (or the time budget is spent: then a successor is woken). Each batch is
    one transaction: the cursor row is locked (a second task finds it locked and leaves the
    work to the first), `handle` runs, the cursor moves. `handle` writes in that transaction, so its
    effects and the cursor commit together. Returns how many changes it handled."""
    _wake_guard_clear(consumer)  # a commit from now on wakes a successor
    started, total = time.monotonic(), 0
    while True:
        with transaction.atomic():
            if connection.vendor == "postgresql" and len(connection.atomic_blocks) == 1:
                # Durable input (the feed), derived output: a lost commit is a cursor not moved.
                with connection.cursor() as cursor:
                    cursor.execute("SET LOCAL synchronous_commit = off")
            # Another task holding the cursor reads on until the feed is empty: leave it to
            # that one rather than wait for its lock. A waiting task holds a worker process
            # for nothing, and with a wake per commit both processes of a worker ended up
            # waiting on one consumer while the pipeline's batches queued behind them.
            position = (
                FeedConsumer.objects.select_for_update(skip_locked=True)
                .filter(name=consumer)
                .values_list("position")
                .first()
            )
            if position is None and FeedConsumer.objects.filter(name=consumer).exists():
                _wake_guard_clear(consumer)  # so that the next commit wakes a successor
                return total
            if position is None and consumer in _REGISTRY:
                _ensure_registered()
                position = (
                    FeedConsumer.objects.select_for_update().filter(name=consumer).values_list("position").first()
                )
            if position is None:
                logger.warning("Feed consumer %s is not registered.", consumer)
                return total
            rows = feed_read(after=position[0], limit=batch)
            if not rows:
                return total
            handle(rows)
            FeedConsumer.objects.filter(name=consumer).update(position=rows[-1].id, updated_at=timezone.now())
        total += len(rows)
        if time.monotonic() - started > CONSUME_BUDGET_SECONDS:
            transaction.on_commit(lambda: feed_wake([consumer]))
            return total


def _wake_guard_clear(consumer: str) -> None:
    try:
        cache.delete(_wake_key(consumer))
    except _CACHE_ERRORS:  # the guard is only an optimisation
        logger.warning("Feed wake guard not cleared.", exc_info=True)


def feed_prune() -> int:
    """Delete the changes every consumer has passed; returns how many."""
    _ensure_registered()
    positions = list(FeedConsumer.objects.values_list("position", flat=True))
    if not positions:
        return 0
    return ProfileChange.objects.filter(id__lte=min(positions)).delete()[0]


def feed_sweep() -> int:
    """Beat's pass: wake every consumer that has changes to read, then prune. Returns how
    many consumers it woke."""
    _ensure_registered()
    last = ProfileChange.objects.order_by("-id").values_list("id", flat=True).first() or 0
    behind = [name for name, position in FeedConsumer.objects.values_list("name", "position") if position < last]
    if behind:
        feed_wake(behind)
    feed_prune()
    return len(behind)


@dataclass(frozen=True, slots=True)
class ConsumerLag:
    name: str
    position: int
    behind: int
    oldest_waiting_at: datetime | None
    updated_at: datetime


def feed_lag() -> list[ConsumerLag]:
    """How far behind each consumer is: changes waiting, and since when."""
    out = []
    for c in FeedConsumer.objects.order_by("name"):
        waiting = ProfileChange.objects.filter(id__gt=c.position)
        oldest = waiting.order_by("id").values_list("at", flat=True).first()
        last = ProfileChange.objects.order_by("-id").values_list("id", flat=True).first() or c.position
        out.append(ConsumerLag(c.name, c.position, max(0, last - c.position), oldest, c.updated_at))
    return out
