"""Health: `/healthz` is liveness (the process answers; it touches nothing), `/readyz` is
readiness (PostgreSQL and the broker both answer within `READY_DEADLINE_S`), for an
orchestrator to stop routing to a node that cannot serve. Each check runs in its own
thread on a connection of its own with timeouts no longer than the deadline, so a service
that stalls (accepts, never answers) costs the deadline, not a hung request."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

import orjson
import psycopg
from django.db import connection
from django.http import HttpRequest, HttpResponse

from cdp.celery import app as celery_app
from ingest.handoff import handoff_stats
from profiles.db import RETRY_AFTER_SECONDS

# An orchestrator polls every 5-15 s with a timeout of its own (compose: 10 s); a local
# PostgreSQL connects and answers in ~5 ms, Redis in well under 1 ms.
READY_DEADLINE_S = 2.0


def healthz(request: HttpRequest) -> HttpResponse:
    return HttpResponse("ok\n", content_type="text/plain")


def _postgresql_check() -> Callable[[float], None]:
    """The PostgreSQL check, its connection parameters read in the request's thread."""
    if connection.vendor != "postgresql":  # SQLite: a file, in this process

        def sqlite(deadline: float) -> None:
            try:
                with connection.cursor() as cursor:
                    cursor.execute("SELECT 1")
            finally:
                connection.close()  # the check thread's own connection

        return sqlite
    params = {k: v for k, v in connection.get_connection_params().items() if k not in ("cursor_factory", "context")}

    def postgresql(deadline: float) -> None:
        timeout = max(2, math.ceil(deadline))  # libpq counts whole seconds, at least 2
        with psycopg.connect(**{**params, "connect_timeout": timeout}, autocommit=True) as conn:
            conn.execute("SELECT 1")

    return postgresql


def _broker(deadline: float) -> None:
    url = celery_app.conf.broker_write_url or celery_app.conf.broker_url
    options = {"socket_connect_timeout": deadline, "socket_timeout": deadline, "max_retries": 0,
               "connect_retries_timeout": deadline}  # fmt: skip
    with celery_app.connection_for_write(url, connect_timeout=deadline, transport_options=options) as conn:
        channel = conn.default_channel  # Redis: connects and PINGs
        client = getattr(channel, "client", None)
        if client is not None and hasattr(client, "ping"):
            client.ping()


def readiness(deadline: float = READY_DEADLINE_S) -> dict[str, str]:
    """Each check's outcome, `ok` or `down: <why>`, all within `deadline` seconds."""
    checks: dict[str, Callable[[float], None]] = {"postgresql": _postgresql_check(), "broker": _broker}
    results: dict[str, str] = {}

    def run(name: str, check: Callable[[float], None]) -> None:
        try:
            check(deadline)
            results[name] = "ok"
        except Exception as exc:  # any failure of a check means that service is down; it is reported, not raised
            results[name] = f"down: {type(exc).__name__}: {str(exc)[:200]}"

    threads = [
        threading.Thread(target=run, args=item, daemon=True, name=f"readyz-{item[0]}") for item in checks.items()
    ]
    start = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(max(0.0, deadline - (time.monotonic() - start)))
    return {name: results.get(name, f"down: no answer within {deadline:g} s") for name in checks}


def readyz(request: HttpRequest) -> HttpResponse:
    checks = readiness()
    ready = all(value == "ok" for value in checks.values())
    body: dict[str, Any] = {"status": "ready" if ready else "unavailable", "checks": checks,
                            "handoff": asdict(handoff_stats())}  # fmt: skip
    response = HttpResponse(orjson.dumps(body), status=200 if ready else 503, content_type="application/json")
    if not ready:
        response["Retry-After"] = str(RETRY_AFTER_SECONDS)
    response["Cache-Control"] = "no-store"
    return response
