"""Event to result under load, for `bench/traits.py` (event to computed value) and
`bench/audiences.py` (event to membership).

Against a filled benchmark database it starts gunicorn and a Celery worker (with beat off),
then sends, open loop, `rate` events/s of background load through `/v1/batch` (batches of
100, as server-side SDKs flush, for people of the population, the population's mix of events), and every `probe_every`
seconds one probe: a request for a new person whose event must change a value or a
membership. A poller reads, every 20 ms, which probes have their result (a SQL query given
by the caller, over an id watermark); a probe's latency is from just before its POST to the
poll that first sees its result. The load is warmed up before probes start.
"""

from __future__ import annotations

import base64
import http.client
import random
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import psycopg

from bench.ingest import PYTHON, Service, _celery_purge, _free_port, _manage, _wait_healthy, app_env, tear_down
from bench.population import CAMPAIGNS, CATEGORIES, PLANS

BATCH = 100  # as the server-side SDKs flush (analytics-python: 100)


@dataclass(slots=True)
class Outcome:
    latencies: list[float] = field(default_factory=list)  # seconds, one per probe seen
    resolved: list[float] = field(default_factory=list)  # seconds to the probe's event in the log, resolved
    probes: int = 0
    missed: int = 0
    sent_events: int = 0
    load_seconds: float = 0.0
    late_sends: int = 0  # background batches sent over 100 ms after their time
    failures: list[str] = field(default_factory=list)
    backlog_at_end: int = 0

    def pct(self, q: float, values: list[float] | None = None) -> float | None:
        values = self.latencies if values is None else values
        if not values:
            return None
        s = sorted(values)
        return s[min(len(s) - 1, max(0, round(q / 100 * len(s) + 0.5) - 1))]

    def summary(self) -> dict[str, Any]:
        p50, p95 = self.pct(50), self.pct(95)
        r50, r95 = self.pct(50, self.resolved), self.pct(95, self.resolved)
        return {
            "resolved_p50_ms": round(r50 * 1000, 1) if r50 is not None else None,
            "resolved_p95_ms": round(r95 * 1000, 1) if r95 is not None else None,
            "probes": self.probes, "seen": len(self.latencies), "missed": self.missed,
            "p50_ms": round(p50 * 1000, 1) if p50 is not None else None,
            "p95_ms": round(p95 * 1000, 1) if p95 is not None else None,
            "mean_ms": round(statistics.fmean(self.latencies) * 1000, 1) if self.latencies else None,
            "background_events_per_s": round(self.sent_events / self.load_seconds) if self.load_seconds else 0,
            "late_sends": self.late_sends, "failures": self.failures[:5], "backlog_at_end": self.backlog_at_end,
        }  # fmt: skip


def _iso(at: datetime) -> str:
    return at.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def background_message(rng: random.Random, profiles: int) -> dict[str, Any]:
    # A third of the load comes from the 1,000 busiest-looking ids, the rest from anyone.
    pid = rng.randrange(1, 1001) if rng.random() < 0.33 else rng.randrange(1, profiles + 1)
    if pid % 20 >= 17:
        ident: dict[str, Any] = {"anonymousId": f"a{pid}"}
    else:
        ident = {"userId": f"u{pid}", "anonymousId": f"a{pid}"}
    r = rng.random()
    now = _iso(datetime.now(UTC))
    if r < 0.35:
        path = "/pricing" if rng.random() < 0.08 else f"/p/{rng.randrange(500)}"
        return {"type": "page", "name": "Product", "properties": {"path": path}, "timestamp": now, **ident}
    if r < 0.6:
        return {"type": "track", "event": "Product Viewed", "timestamp": now, **ident,
                "properties": {"category": rng.choice(CATEGORIES), "price": 20.5}}  # fmt: skip
    if r < 0.8:
        return {"type": "track", "event": rng.choice(("Email Opened", "Email Delivered")), "timestamp": now, **ident,
                "properties": {"campaign_name": rng.choice(CAMPAIGNS), "machine_open": rng.random() < 0.3}}  # fmt: skip
    if r < 0.9:
        return {"type": "track", "event": "Product Added", "timestamp": now, **ident,
                "properties": {"category": rng.choice(CATEGORIES), "price": 20.5}}  # fmt: skip
    if r < 0.95:
        return {"type": "track", "event": "Order Completed", "timestamp": now, **ident,
                "properties": {"revenue": 42.0, "plan": rng.choice(PLANS),
                               "category": rng.choice(CATEGORIES)}}  # fmt: skip
    return {"type": "track", "event": "Email Link Clicked", "timestamp": now, **ident,
            "properties": {"campaign_name": rng.choice(CAMPAIGNS)}}  # fmt: skip


class _Sender:
    def __init__(self, port: int, auth: str) -> None:
        self.port, self.auth = port, auth
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)

    def post(self, batch: list[dict[str, Any]]) -> str | None:
        body = orjson.dumps({"batch": batch})
        headers = {"Authorization": self.auth, "Content-Type": "application/json"}
        for attempt in range(2):
            try:
                self.conn.request("POST", "/v1/batch", body, headers)
                resp = self.conn.getresponse()
                data = resp.read()
                return None if resp.status == 200 else f"{resp.status} {data[:200]!r}"
            except (OSError, http.client.HTTPException) as exc:
                self.conn.close()
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
                if attempt:
                    return f"{type(exc).__name__}: {exc}"
        return None


def measure(
    *,
    database_url: str,
    broker_url: str,
    profiles: int,
    probe: Callable[[int], list[dict[str, Any]]],
    seen: Callable[[psycopg.Connection[Any], int], tuple[int, list[str]]],
    rate: float = 1000.0,
    seconds: float = 60.0,
    warmup: float = 10.0,
    probe_every: float = 0.2,
    celery_concurrency: int = 2,
    say: Callable[[str], None] = print,
) -> Outcome:
    """`probe(i)`: the messages of probe i (their userId is `probe-<run>-<i>`, given back by
    `seen`). `seen(db, watermark)`: (new watermark, userIds whose result appeared)."""
    var_dir = Path(tempfile.mkdtemp(prefix="cdp-bench-realtime-"))
    ns = type("Args", (), {"database_url": database_url, "broker_url": broker_url})()
    env = app_env(ns, var_dir)  # type: ignore[arg-type]
    services: list[Service] = []
    out = Outcome()
    stop = threading.Event()
    try:
        write_key = _manage(env, "create_source", f"realtime-{int(time.time())}").strip().splitlines()[-1].strip()
        auth = "Basic " + base64.b64encode(f"{write_key}:".encode()).decode()
        _celery_purge(env)
        port = _free_port()
        gunicorn = Service("gunicorn", [PYTHON, "-m", "gunicorn", "cdp.wsgi", "--bind", f"127.0.0.1:{port}",
                                        "--workers", "2", "--worker-class", "gthread", "--threads", "4",
                                        "--log-level", "warning", "--timeout", "60"],
                           env, var_dir / "gunicorn.log")  # fmt: skip
        services.append(gunicorn)
        worker = Service("celery", [PYTHON, "-m", "celery", "-A", "cdp", "worker", "--pool", "prefork",
                                    "--concurrency", str(celery_concurrency), "--loglevel", "WARNING",
                                    "--without-gossip", "--without-mingle", "--without-heartbeat",
                                    "--hostname", "realtime@%h"], env, var_dir / "celery.log")  # fmt: skip
        services.append(worker)
        _wait_healthy(port, gunicorn)
        run = int(time.time()) % 100000
        pending: dict[str, float] = {}
        lock = threading.Lock()
        probing = threading.Event()

        def background(n: int, threads: int) -> None:
            rng = random.Random(n)
            sender = _Sender(port, auth)
            interval = BATCH * threads / rate
            t = time.perf_counter() + n * interval / threads
            started = 0.0
            while not stop.is_set():
                delay = t - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
                elif delay < -0.1:
                    out.late_sends += 1
                err = sender.post([background_message(rng, profiles) for _ in range(BATCH)])
                if err:
                    out.failures.append(err)
                elif probing.is_set():
                    out.sent_events += BATCH
                    started = started or time.perf_counter()
                t += interval
            if started:  # the rate while probing
                out.load_seconds = max(out.load_seconds, time.perf_counter() - started)

        def prober() -> None:
            sender = _Sender(port, auth)
            i = 0
            t = time.perf_counter()
            while not stop.is_set():
                if probing.is_set():
                    i += 1
                    messages = probe(i)
                    uid = f"probe-{run}-{i}"
                    for m in messages:
                        m["userId"] = uid
                        m.setdefault("timestamp", _iso(datetime.now(UTC)))
                    with lock:
                        pending[uid] = time.perf_counter()
                    err = sender.post(messages)
                    out.probes += 1
                    if err:
                        out.failures.append(err)
                t += probe_every
                time.sleep(max(0.0, t - time.perf_counter()))

        def poller() -> None:
            # Never prepared: a generic plan for "id > watermark" scans the whole table, and
            # a poll that costs a second of CPU would be what the run measures.
            db = psycopg.connect(database_url, autocommit=True, prepare_threshold=None)
            mark = seen(db, -1)[0]
            row = db.execute("SELECT coalesce(max(id), 0) FROM profiles_event").fetchone()
            event_mark = int(row[0]) if row else 0
            stored: set[str] = set()
            while not stop.is_set() or pending:
                mark, uids = seen(db, mark)
                # And when each probe's event reached the log with its profile (resolution).
                rows = db.execute("SELECT id, user_id FROM profiles_event WHERE id > %s AND user_id LIKE %s "
                                  "AND profile_id IS NOT NULL", (event_mark, f"probe-{run}-%")).fetchall()  # fmt: skip
                event_mark = max([event_mark, *(r[0] for r in rows)])
                now = time.perf_counter()
                with lock:
                    for _, uid in rows:
                        if uid not in stored and uid in pending:
                            stored.add(uid)
                            out.resolved.append(now - pending[uid])
                    for uid in uids:
                        sent = pending.pop(uid, None)
                        if sent is not None:
                            out.latencies.append(now - sent)
                    if stop.is_set() and now > stop_at + 30:
                        out.missed = len(pending)
                        pending.clear()
                time.sleep(0.02)
            db.close()

        threads = 4
        workers = [threading.Thread(target=background, args=(n, threads), daemon=True) for n in range(threads)]
        for w in workers:
            w.start()
        say(f"  background load {rate:,.0f} events/s; warming up {warmup:.0f} s")
        time.sleep(warmup)
        stop_at = float("inf")
        poll_thread = threading.Thread(target=poller, daemon=True)
        poll_thread.start()
        probe_thread = threading.Thread(target=prober, daemon=True)
        probe_thread.start()
        time.sleep(0.5)
        probing.set()
        say(f"  probing every {probe_every * 1000:.0f} ms for {seconds:.0f} s")
        time.sleep(seconds)
        with psycopg.connect(database_url) as db:
            row = db.execute("SELECT coalesce(sum(size), 0) FROM profiles_eventbatch").fetchone()
            out.backlog_at_end = int(row[0]) if row else 0
        stop_at = time.perf_counter()
        stop.set()
        for w in [*workers, probe_thread]:
            w.join(10)
        poll_thread.join(40)
        if not worker.alive():
            out.failures.append("the Celery worker died:\n" + worker.tail())
        return out
    finally:
        stop.set()
        tear_down(services, env, var_dir, keep_logs=False)


def identity_with_and_without(
    *, database_url: str, runs: int, people: int, flags: list[str], say: Callable[[str], None] = print
) -> dict[str, Any]:
    """`bench/identity.py` `runs` times with `flags` (definitions live) and as many without,
    interleaved (same hour, same machine): the medians of both rates and their ratios."""
    import json
    import subprocess
    import sys

    root = Path(__file__).resolve().parent.parent
    fields = ("end_to_end_events_per_s", "with_consumers_events_per_s")
    found: dict[str, list[dict[str, Any]]] = {"without": [], "with": []}
    for n in range(runs):
        for mode in ("without", "with"):
            out = Path(tempfile.mkstemp(suffix=".json")[1])
            argv = [sys.executable, str(root / "bench/identity.py"), "--people", str(people),
                    "--database-url", database_url.rsplit("/", 1)[0] + "/cdp_bench_identity",
                    "--broker-url", "redis://127.0.0.1:6379/13", "--json", str(out), "--examples", "0",
                    *(flags if mode == "with" else [])]  # fmt: skip
            subprocess.run(argv, cwd=root, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=3600)
            r = json.loads(out.read_text()) if out.stat().st_size else {}
            found[mode].append(r)
            say(f"  identity run {n + 1} {mode:<7} {' '.join(flags)}: end to end {r.get(fields[0])} events/s; "
                f"with the feed's consumers caught up {r.get(fields[1])}")  # fmt: skip
    result: dict[str, Any] = {m: {f: statistics.median(float(r.get(f) or 0) for r in found[m]) for f in fields}
                              for m in found}  # fmt: skip
    for f in fields:
        base = result["without"][f]
        result[f"ratio_{f}"] = round(result["with"][f] / base, 3) if base else None
    return result


def identity_report(x: dict[str, Any], what: str) -> str:
    """The lines a benchmark prints for `identity_with_and_without`'s result."""
    lines = []
    for f, label in (("end_to_end_events_per_s", "resolved"), ("with_consumers_events_per_s", "consumers caught up")):
        ratio = x[f"ratio_{f}"]
        lines.append(f"identity end to end ({label}): {x['with'][f]:,.0f} events/s with {what}, "
                     f"{x['without'][f]:,.0f} without: ratio {ratio}; bar 0.7 "
                     f"{'met' if ratio and ratio >= 0.7 else 'NOT met'}, goal 0.85 "
                     f"{'met' if ratio and ratio >= 0.85 else 'not met'}\n")  # fmt: skip
    return "".join(lines)
