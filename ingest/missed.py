"""Calls the edge answered without storing them because the database was unavailable: the
pixel answers its GIF whatever happens, so its misses are counted here, in the cache (Redis
with REDIS_URL, shared by every web process; else per process), for the ingest debugger to
show once the database is back. Best effort: with the cache away too, the log keeps them."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.core.cache import cache
from django.utils import timezone

logger = logging.getLogger(__name__)

# Hourly buckets, kept a little past the debugger's 24 hours.
_KEEP = timedelta(hours=25)


def _key(endpoint: str, hour: datetime) -> str:
    return f"cdp:missed:{endpoint}:{hour:%Y%m%d%H}"


def missed_count(*, endpoint: str, at: datetime) -> None:
    """Count one call to `endpoint` answered without being stored. Never raises."""
    key = _key(endpoint, at)
    try:
        if not cache.add(key, 1, timeout=int(_KEEP.total_seconds())):
            cache.incr(key)
    except Exception:  # the cache is best effort here: any failure of its backend is only logged
        logger.warning("A missed %s call could not be counted: the cache is unavailable too.", endpoint, exc_info=True)


def missed_recent(*, endpoint: str, hours: int = 24) -> int:
    """Calls to `endpoint` answered without being stored over the last `hours`; 0 if the
    cache cannot say."""
    now = timezone.now().replace(minute=0, second=0, microsecond=0)
    keys = [_key(endpoint, now - timedelta(hours=h)) for h in range(hours)]
    try:
        return sum(int(v) for v in cache.get_many(keys).values())
    except Exception:  # best effort, as above
        logger.warning("Missed %s calls could not be read: the cache is unavailable.", endpoint, exc_info=True)
        return 0
