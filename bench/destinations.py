#!/usr/bin/env python3
"""Destinations benchmark (not a test; never run by CI): delivery rates against raw loops, and
a healthy destination's lag while two others fail.

    .venv/bin/python bench/destinations.py                 # 3 runs of each measure, medians
    .venv/bin/python bench/destinations.py --runs 5 --deliveries 5000

What one run does:

1. Drops and re-creates the PostgreSQL database `cdp_bench_destinations` (a name without
   "bench" is refused), migrates it, and starts a real Celery worker (prefork,
   `--concurrency`, with beat for the retry sweep) on the default queue of a Redis database
   of its own (`--broker`).
2. Starts stand-ins in a child process (so their threads do not share the GIL with the
   measurement): a webhook sink that answers 200 and records each message's lag (now minus
   the `enqueued_at` the message carries), one that never answers (every request hangs past
   the 5 s timeout), one that answers 500; and, in this process, the Mailjet and Mailchimp
   stand-ins of the tests (tests/destinations/standins.py).
3. Throughput, per adapter: `--deliveries` messages owed in one transaction; the time from
   its commit until every row is delivered (the worker drains, woken at the commit). The
   reference: the same requests (the webhook: the same signed bodies; Mailjet and Mailchimp:
   the bulk requests our run made, as the stand-in recorded them) sent one after another from
   this process with the same HTTP client (`requests.Session`). Rate ratio = ours / raw.
4. Isolation: for `--seconds`, one message every 1/`--rate` s, each in its own transaction,
   owed to a healthy webhook and to the hanging and the failing ones; the healthy sink's p95
   lag, against the same load with only the healthy destination.
Prints each figure per run, then the medians. Run one benchmark at a time.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

DB = "cdp_bench_destinations"
# The default queue of the broker's Redis database (by default db 4, which nothing else here
# uses): the worker's own tasks (the sweep, a drain asking for another) go to it too.
QUEUE = "celery"


# --- the sinks' child process ------------------------------------------------------------------


def serve_sinks() -> None:
    """Three sinks on free ports, printed as JSON; `GET /stats` answers the lags seen, `POST /reset` forgets."""
    lags: list[float] = []
    lock = threading.Lock()

    def handler(mode: str) -> type[BaseHTTPRequestHandler]:
        class H(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # one segment per answer: no 40 ms delayed-ACK stall

            def log_message(self, *a: Any) -> None:
                pass

            def _reply(self, status: int, body: bytes = b"{}") -> None:
                with contextlib.suppress(OSError):  # the client gave up (the hanging sink's timeouts)
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)

            def do_GET(self) -> None:
                with lock:
                    self._reply(200, json.dumps(lags).encode())

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.path == "/reset":
                    with lock:
                        lags.clear()
                    return self._reply(200)
                if mode == "hang":
                    time.sleep(30)
                    return self._reply(200)
                if mode == "error":
                    return self._reply(500, b'{"error":"down"}')
                at = (json.loads(body).get("properties") or {}).get("enqueued_at")
                if at is not None:
                    with lock:
                        lags.append(time.time() - at)
                self._reply(200)

        return H

    ports = {}
    for mode in ("ok", "hang", "error"):
        server = ThreadingHTTPServer(("127.0.0.1", 0), handler(mode))
        server.daemon_threads = True
        server.request_queue_size = 128
        threading.Thread(target=server.serve_forever, daemon=True).start()
        ports[mode] = server.server_address[1]
    print(json.dumps(ports), flush=True)
    sys.stdin.read()  # until the parent goes


# --- setup -------------------------------------------------------------------------------------


def env(args: argparse.Namespace) -> dict[str, str]:
    return {**os.environ, "DATABASE_URL": f"{args.pg}/{DB}", "CELERY_BROKER_URL": args.broker, "REDIS_URL": args.redis,
            "DJANGO_SETTINGS_MODULE": "cdp.settings", "CDP_VAR_DIR": "/tmp/benchd"}  # fmt: skip


def setup(args: argparse.Namespace) -> subprocess.Popen[bytes]:
    import psycopg

    with psycopg.connect(f"{args.pg}/postgres", autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {DB}")
    py = str(ROOT / ".venv" / "bin" / "python")
    subprocess.run([py, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env(args), check=True)
    os.environ.update(env(args))
    import django

    django.setup()
    from cdp.celery import app

    app.conf.task_always_eager = False
    subprocess.run([py, "-m", "celery", "-A", "cdp", "purge", "-f", "-Q", QUEUE], cwd=ROOT, env=env(args),
                   capture_output=True)  # fmt: skip
    return subprocess.Popen(
        [py, "-m", "celery", "-A", "cdp", "worker", "-B", "-s", "/tmp/benchd/beat", "-Q", QUEUE, "-P", "prefork",
         f"--concurrency={args.concurrency}", "--loglevel=WARNING", "--without-gossip", "--without-mingle"],
        cwd=ROOT, env=env(args),
    )  # fmt: skip


def wait_delivered(dest_id: int, n: int, timeout: float = 120) -> float:
    from django.db.models import Count

    from destinations.models import Delivery

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if Delivery.objects.filter(destination_id=dest_id, status="delivered").count() >= n:
            return time.monotonic()
        time.sleep(0.02)
    from destinations.models import Destination

    d = Destination.objects.get(pk=dest_id)
    counts = dict(Delivery.objects.filter(destination_id=dest_id).values_list("status").annotate(n=Count("id")))
    raise SystemExit(
        f"destination {dest_id}: not every delivery delivered in {timeout:.0f} s: {counts}, lease "
        f"{d.lease_until}, paused {d.paused_until}, last error {d.last_error!r}"
    )


def owe(dest_ids: list[int], n: int, kind: str = "audience", tag: str = "", key: str = "vip") -> float:
    """Owe `n` messages in one transaction; returns the monotonic time of its commit."""
    from django.db import transaction

    from destinations.outbox import Outgoing, deliveries_enqueue

    messages = [Outgoing(kind=kind, subject=key, person=f"p{tag}{i}", message={
        "type": "identify", "messageId": f"{tag}-{i}", "userId": f"u{i}",
        "traits": {key: True, "email": f"person{tag}{i}@example.com"},
        "context": {"personas": {"computation_class": "audience", "computation_key": key},
                    "traits": {"plan": "pro", "ltv": i * 1.5, "location": {"latitude": 48.8, "longitude": 2.3}}},
    }) for i in range(n)]  # fmt: skip
    with transaction.atomic():
        deliveries_enqueue(messages=messages, only=dest_ids)
    return time.monotonic()


# --- throughput --------------------------------------------------------------------------------


def throughput_webhook(sink_url: str, n: int, run: int) -> tuple[float, float]:
    import requests

    from destinations.adapters.webhook import signature
    from destinations.models import Delivery
    from destinations.services import destination_create

    dest = destination_create(data={"name": f"sink {run}", "kind": "webhook", "audiences": "all",
                                    "settings": {"urls": [f"{sink_url}/hook"], "shared_secret": "s"}})  # fmt: skip
    start = time.monotonic()
    committed = owe([dest.pk], n, tag=f"w{run}")
    ours = n / (wait_delivered(dest.pk, n) - min(start, committed))
    bodies = [
        json.dumps(m).encode() for m in Delivery.objects.filter(destination=dest).values_list("message", flat=True)
    ]
    session = requests.Session()
    session.headers["User-Agent"] = "Segment.io/1.0"
    t0 = time.monotonic()
    for body in bodies:
        session.post(
            f"{sink_url}/hook",
            data=body,
            timeout=5,
            headers={"Content-Type": "application/json", "X-Signature": signature(body, "s")},
        ).raise_for_status()
    raw = n / (time.monotonic() - t0)
    return ours, raw


def throughput_bulk(kind: str, n: int, run: int) -> tuple[float, float]:
    import requests

    from destinations.services import destination_create
    from tests.destinations.standins import MailchimpStandIn, MailjetStandIn

    standin: Any = MailjetStandIn() if kind == "mailjet" else MailchimpStandIn(merge_tags=("PLAN",))
    settings = ({"api_key": "mj-key", "api_secret": "mj-secret", "lists": {"vip": 99}, "base_url": standin.url}
                if kind == "mailjet" else {"api_key": "mc-key-us6", "list_id": "a6b5da1054", "base_url": standin.url,
                                           "merge_fields": {"plan": "PLAN"}})  # fmt: skip
    try:
        dest = destination_create(data={"name": f"{kind} {run}", "kind": kind, "audiences": "all",
                                        "settings": settings})  # fmt: skip
        committed = owe([dest.pk], n, kind="sync" if kind == "mailchimp" else "audience", tag=f"{kind[:2]}{run}")
        ours = n / (wait_delivered(dest.pk, n) - committed)
        recorded = list(standin.received)
        auth = ("mj-key", "mj-secret") if kind == "mailjet" else ("cdp", "mc-key-us6")
        session = requests.Session()
        t0 = time.monotonic()
        for r in recorded:
            url = r.path if r.path.startswith("http") else f"{standin.url}{r.path}"
            session.request(r.method, url, data=r.body or None, auth=auth, timeout=30,
                            headers={"Content-Type": "application/json"})  # fmt: skip
        raw = n / (time.monotonic() - t0)
        return ours, raw
    finally:
        standin.close()


# --- isolation ---------------------------------------------------------------------------------


def isolation(ports: dict[str, int], seconds: float, rate: float, with_bad: bool, run: int) -> float:
    import requests
    from django.db import transaction

    from destinations.outbox import Outgoing, deliveries_enqueue
    from destinations.services import destination_create

    base = "http://127.0.0.1"
    requests.post(f"{base}:{ports['ok']}/reset", timeout=5)
    healthy = destination_create(data={"name": f"healthy {run} {with_bad}", "kind": "webhook", "audiences": "all",
                                       "settings": {"urls": [f"{base}:{ports['ok']}/hook"]}})  # fmt: skip
    ids = [healthy.pk]
    if with_bad:
        for mode in ("hang", "error"):
            ids.append(destination_create(data={"name": f"{mode} {run}", "kind": "webhook", "audiences": "all",
                                                "settings": {"urls": [f"{base}:{ports[mode]}/hook"]}}).pk)  # fmt: skip
    n = int(seconds * rate)
    t0 = time.monotonic()
    for i in range(n):
        target = t0 + i / rate
        if (wait := target - time.monotonic()) > 0:
            time.sleep(wait)
        message = {"type": "track", "event": "Audience Entered", "messageId": f"iso-{run}-{with_bad}-{i}",
                   "properties": {"audience_key": "vip", "vip": True, "enqueued_at": time.time()}}  # fmt: skip
        with transaction.atomic():
            deliveries_enqueue(messages=[Outgoing(kind="audience", subject="vip", person=f"p{i}", message=message)],
                               only=ids)  # fmt: skip
    wait_delivered(healthy.pk, n)
    lags = requests.get(f"{base}:{ports['ok']}/stats", timeout=5).json()
    from destinations.models import Destination

    Destination.objects.filter(pk__in=ids).update(enabled=False)  # the bad ones stop before the next run
    return statistics.quantiles(lags, n=100)[94] * 1000


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--serve-sinks":
        serve_sinks()
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--deliveries", type=int, default=3000)
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--rate", type=float, default=50.0, help="messages per second in the isolation runs")
    parser.add_argument("--concurrency", type=int, default=3, help="worker processes")
    parser.add_argument("--pg", default="postgres://postgres@127.0.0.1:5432")
    parser.add_argument("--broker", default="redis://127.0.0.1:6379/4")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/5")
    args = parser.parse_args()
    worker = setup(args)
    sinks = subprocess.Popen([sys.executable, __file__, "--serve-sinks"], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        ports = json.loads(sinks.stdout.readline())  # type: ignore[union-attr]
        time.sleep(3)  # the worker starts
        results: dict[str, list[tuple[float, float]]] = {"webhook": [], "mailjet": [], "mailchimp": []}
        lag: dict[bool, list[float]] = {False: [], True: []}
        for run in range(args.runs):
            w = throughput_webhook(f"http://127.0.0.1:{ports['ok']}", args.deliveries, run)
            mj = throughput_bulk("mailjet", args.deliveries, run)
            mc = throughput_bulk("mailchimp", args.deliveries, run)
            for name, (ours, raw) in (("webhook", w), ("mailjet", mj), ("mailchimp", mc)):
                results[name].append((ours, raw))
                print(
                    f"run {run + 1} {name:9} ours {ours:8.0f}/s  raw loop {raw:8.0f}/s  ratio {ours / raw:.2f}",
                    flush=True,
                )
            for with_bad in (False, True):
                p95 = isolation(ports, args.seconds, args.rate, with_bad, run)
                lag[with_bad].append(p95)
                print(f"run {run + 1} healthy p95 lag {'with' if with_bad else 'without'} the bad ones: {p95:.0f} ms",
                      flush=True)  # fmt: skip
        print(f"\nmedians of {args.runs} runs ({args.deliveries} deliveries; worker concurrency {args.concurrency}):")
        for name, pairs in results.items():
            ours, raw = statistics.median(p[0] for p in pairs), statistics.median(p[1] for p in pairs)
            ratio = statistics.median(p[0] / p[1] for p in pairs)
            print(f"  {name:9} ours {ours:8.0f}/s  raw loop {raw:8.0f}/s  ratio {ratio:.2f}")
        without, with_ = statistics.median(lag[False]), statistics.median(lag[True])
        print(f"  isolation: healthy p95 lag {with_:.0f} ms with a hanging and a failing destination, {without:.0f} ms "
              f"without: ratio {with_ / without:.2f} ({args.rate:g} messages/s for {args.seconds:g} s)")  # fmt: skip
        return 0
    finally:
        worker.terminate()
        worker.wait(30)
        sinks.terminate()


if __name__ == "__main__":
    sys.exit(main())
