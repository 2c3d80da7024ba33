"""What the edge refused, kept for the ingest debugger, and bounded at every moment.

A write key is public (it sits in every web page), so whatever a refusal stores must not grow
with what an attacker sends. Each refusal is counted (`IngestCounter.rejected` for a source,
an `IngestNotice` for requests with no valid key), but a copy is kept only up to a cap per
minute: per source, and for requests with no valid key per client address and in all. Past
it, the refusal is counted without being stored (`rejections_not_stored`). With the trim
that keeps the newest `REJECTED_KEEP_PER_SOURCE` rows, a source never holds more than
keep + cap x trim interval rows, whatever arrives.
"""

from __future__ import annotations

import logging
import time
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
import redis
from django.conf import settings
from django.core.cache import cache
from django.db import transaction

from ingest.counters import counters_add, notices_add
from ingest.models import RejectedMessage, Source

logger = logging.getLogger(__name__)

# The debugger keeps a copy of each refused message up to this size.
REJECTED_PAYLOAD_CHARS = 2048
NOT_STORED = "rejections_not_stored"
UNKNOWN_SOURCE = 0  # the notices' source id for requests with no valid write key


@dataclass(frozen=True, slots=True)
class Rejection:
    index: int | None
    code: str
    message: str


@dataclass(frozen=True, slots=True)
class Refusal:
    rejection: Rejection
    source: Source | None
    payload: Any


def _truncated(payload: Any) -> str:
    if isinstance(payload, bytes | bytearray):
        text = bytes(payload[: REJECTED_PAYLOAD_CHARS * 2]).decode("utf-8", errors="replace")
    elif isinstance(payload, str):
        text = payload
    else:
        try:
            text = orjson.dumps(payload, default=str, option=orjson.OPT_NON_STR_KEYS).decode()
        except TypeError:  # nested past orjson's depth limit
            text = "(not shown: nested too deeply)"
    # PostgreSQL text cannot hold NUL; keep it visible instead of failing the insert.
    return text[:REJECTED_PAYLOAD_CHARS].replace("\x00", "\\u0000")


def _room(scope: str, wanted: int, cap: int) -> int:
    """How many of `wanted` copies `scope` may still store this minute (and count them).
    A cache that cannot count stores none: a bound that cannot be checked is not kept."""
    key = f"cdp:rejected:{scope}:{int(time.time() // 60)}"
    try:
        cache.add(key, 0, timeout=120)
        after = int(cache.incr(key, wanted))
    except (ValueError, OSError, redis.RedisError):  # Redis down, or the key evicted meanwhile
        logger.warning("Refusals counted but not stored: the cache cannot count them.", exc_info=True)
        return 0
    return max(0, min(wanted, cap - (after - wanted)))


def refusals_record(refused: Sequence[Refusal], *, endpoint: str, received_at: datetime, client: str | None) -> None:
    """Count every refusal, and keep a copy of those within this minute's caps. Runs in the
    caller's transaction (the tracking API's store) or its own."""
    if not refused:
        return
    by_source: dict[int | None, list[Refusal]] = defaultdict(list)
    for refusal in refused:
        by_source[refusal.source.pk if refusal.source else None].append(refusal)
    kept: list[Refusal] = []
    notices: Counter[tuple[int, datetime, str]] = Counter()
    for source_id, items in by_source.items():
        if source_id is not None:
            room = _room(f"source:{source_id}", len(items), settings.CDP_REJECTED_PER_MINUTE_PER_SOURCE)
        else:
            # The pool for all unknown keys is charged only with what the address's own cap
            # lets through, so one noisy client cannot use it up for the others.
            room = _room(f"address:{client or '-'}", len(items), settings.CDP_REJECTED_PER_MINUTE_PER_ADDRESS)
            if room:
                room = _room("unknown", room, settings.CDP_REJECTED_PER_MINUTE_UNKNOWN)
            notices[(UNKNOWN_SOURCE, received_at, "rejected")] += len(items)
        kept += items[:room]
        if len(items) > room:
            notices[(source_id or UNKNOWN_SOURCE, received_at, NOT_STORED)] += len(items) - room
    with transaction.atomic():
        RejectedMessage.objects.bulk_create(
            RejectedMessage(
                source=r.source, received_at=received_at, endpoint=endpoint, index=r.rejection.index,
                code=r.rejection.code, reason=r.rejection.message[:1000], payload=_truncated(r.payload),
            )
            for r in kept
        )  # fmt: skip
        notices_add(notices)


def refusal_record(
    *,
    source: Source | None,
    endpoint: str,
    received_at: datetime,
    code: str,
    reason: str,
    payload: Any,
    client: str | None = None,
) -> None:
    """A refused (or unstorable) request, for the ingest debugger: counted as rejected, and
    kept within the caps."""
    with transaction.atomic():
        refusals_record(
            [Refusal(Rejection(None, code, reason), source, payload)],
            endpoint=endpoint, received_at=received_at, client=client,
        )  # fmt: skip
        if source is not None:
            counters_add({(source.id, received_at): (0, 0, 1)})
