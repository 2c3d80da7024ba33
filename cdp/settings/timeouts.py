"""Timeouts for every connection to a service, so that no outage hangs a request or a worker.

Each figure is what the part waits at most before it answers the failure it can (README,
"Operations"): the edge answers 503 with Retry-After, the broker hand-off leaves the batch
for later, the rate limiter lets the request through.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.core.exceptions import ImproperlyConfigured

# libpq counts whole seconds (and treats 1 as 2). A local or same-network PostgreSQL
# accepts in a few milliseconds; 3 s only rides out a busy server's accept queue.
DB_CONNECT_TIMEOUT_S = 3
# The edge's statements (a batch insert, a source lookup, a Profile API read) take 1-20 ms,
# and the slowest page measured (the admin's profile list on 1M profiles) 116 ms at p99.
# 10 s stays well below gunicorn's 30 s, so a stuck query is answered 503 with Retry-After
# rather than the worker being killed (a 500 after a commit would be worse).
EDGE_STATEMENT_TIMEOUT_MS = 10_000
# The edge's only waits are on the hourly counter row, held for the rest of another
# request's transaction (milliseconds): 3 s means something else holds it.
EDGE_LOCK_TIMEOUT_MS = 3_000

# `edge`: web processes and workers (resolution and the full rebuild set their own per
# transaction). `command`: manage.py, where a migration may run for minutes.
DB_ROLES = ("edge", "command")


def database_timeouts(environ: Mapping[str, str], options: Mapping[str, Any]) -> dict[str, Any]:
    """PostgreSQL connection OPTIONS with this process's timeouts added to `options`.

    Passed at connect time (`-c` settings in the startup packet): no extra round trip."""
    role = environ.get("CDP_DB_ROLE") or "edge"
    if role not in DB_ROLES:
        raise ImproperlyConfigured(f"CDP_DB_ROLE must be one of {', '.join(DB_ROLES)}, not {role!r}.")
    merged = dict(options)
    merged["connect_timeout"] = int(environ.get("CDP_DB_CONNECT_TIMEOUT") or DB_CONNECT_TIMEOUT_S)
    if role == "edge":
        statement = int(environ.get("CDP_DB_STATEMENT_TIMEOUT_MS") or EDGE_STATEMENT_TIMEOUT_MS)
        lock = int(environ.get("CDP_DB_LOCK_TIMEOUT_MS") or EDGE_LOCK_TIMEOUT_MS)
        settings = f"-c statement_timeout={statement} -c lock_timeout={lock}"
        merged["options"] = f"{merged['options']} {settings}" if merged.get("options") else settings
    return merged


# Workers and beat (the edge's own publish is shorter still: CDP_BROKER_PUBLISH_TIMEOUT).
# Without a socket timeout, a publish to a broker that stalls (accepts, never answers)
# waits for ever. A worker's BRPOP waits 1 s server-side, well inside 10 s; kombu's health
# check (every 25 s) drops a half-open consuming connection, and the worker reconnects.
BROKER_TRANSPORT_OPTIONS: dict[str, Any] = {
    "socket_connect_timeout": 2,
    "socket_timeout": 10,
    "socket_keepalive": True,
}

# The cache (Redis, REDIS_URL): a local Redis answers in well under a millisecond, so 50 ms
# is a stall, not load. Every caller treats a cache error as a miss.
CACHE_TIMEOUT_S = 0.05
CACHE_OPTIONS: dict[str, Any] = {"socket_connect_timeout": CACHE_TIMEOUT_S, "socket_timeout": CACHE_TIMEOUT_S}
