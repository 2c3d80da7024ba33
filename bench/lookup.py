#!/usr/bin/env python3
"""Lookup benchmark: Profile API lookups by identifier under load, and a timeline's first page
for a profile with 100,000 events, each against raw psycopg SELECTs of the same rows.

    .venv/bin/python bench/lookup.py                  # 100,000 profiles, 300 lookups/s for 20 s
    .venv/bin/python bench/lookup.py --rate 500 --seconds 30

What one run does:

1. Drops and re-creates a dedicated database (`cdp_bench_lookup`; it refuses a name without
   "bench" unless `--allow-drop`), migrates it, and fills it with SQL: `--profiles` profiles,
   each with a user_id, an email and an anonymous_id and seven traits, plus one profile
   (`user_id:heavy`) with `--events` events. Creates an access token with `manage.py`.
2. Starts gunicorn, waits for /healthz and warms every worker up.
3. Lookups: GET `/v1/spaces/default/collections/users/profiles/<type>:<value>/traits` for
   random identifiers (a third each user_id, email, anonymous_id), sent open-loop at `--rate`
   per second from a pool of threads (keep-alive `http.client`). Latency counts from when a
   request was due, not when a thread got to it, so a stalled server cannot hide its queue.
   Every answer must be 200 with the looked-up profile's traits.
4. Timeline: `--pages` GETs of the first page (`limit=50`) of the heavy profile's events,
   through the REST API and the Profile API, one at a time.
5. Reference, in the same run, with the server stopped: the same rows through psycopg,
   one connection, one SELECT per lookup (identity joined to its profile) and per page
   (the same ORDER BY and LIMIT), each timed alone.
6. Prints p50/p99 for ours and the reference and their ratio, and the bar: lookups p99 under
   25 ms at 300/s, and a timeline first page under 100 ms (p99). Exit 1 if a bar is missed.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import os
import random
import secrets
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.ingest import (  # noqa: E402  (after the path; it re-runs us inside .venv if needed)
    PYTHON,
    Service,
    SetupError,
    _free_port,
    _manage,
    _wait_healthy,
    psycopg,
    recreate_database,
    say,
)

TRAITS_PATH = "/v1/spaces/default/collections/users/profiles/{ident}/traits"
KINDS = ("user_id", "email", "anonymous_id")


def pct(values: list[float], p: float) -> float:
    """Nearest-rank percentile, in the unit given."""
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, round(p / 100 * len(ordered) + 0.5) - 1))]


def fill(url: str, *, profiles: int, events: int) -> None:
    """Profiles, identities and one heavy profile's events, in SQL (fast, and untimed)."""
    with psycopg.connect(url) as db:
        db.execute(
            """
            INSERT INTO profiles_profile (key, created_at, updated_at, first_seen_at, last_seen_at, traits,
                                          trait_meta, merge_count)
            SELECT 'use_bench' || lpad(g::text, 22, '0'), now(), now(), now() - interval '1 year',
                   now() - (g || ' seconds')::interval,
                   jsonb_build_object('name', 'Person ' || g, 'email', 'person' || g || '@example.com',
                                      'plan', (ARRAY['free','pro','business'])[1 + g %% 3], 'logins', g %% 400,
                                      'city', (ARRAY['Paris','London','Berlin','Austin'])[1 + g %% 4],
                                      'company', jsonb_build_object('name', 'Company ' || (g %% 5000)),
                                      'created_at', '2024-01-01T10:00:00Z'),
                   jsonb_build_object('name', jsonb_build_object('at', '2026-01-01T00:00:00.000000Z',
                                                                 'source_id', 1, 'message_id', 'm' || g)),
                   0
            FROM generate_series(1, %s) g
            """,
            [profiles + 1],
        )
        for kind, value in (("user_id", "'u' || p.id"), ("email", "'person' || p.id || '@example.com'"),
                            ("anonymous_id", "md5(p.id::text)")):  # fmt: skip
            db.execute(
                f"""
                INSERT INTO profiles_identity (kind, value, profile_id, first_seen_at, last_seen_at,
                                               first_message_id, source_id, separations)
                SELECT %s, {value}, p.id, now(), now(), 'm' || p.id, 1, '{{}}' FROM profiles_profile p
                """,
                [kind],
            )
        heavy = db.execute("SELECT max(id) FROM profiles_profile").fetchone()[0]
        db.execute("UPDATE profiles_identity SET value = 'heavy' WHERE kind = 'user_id' AND profile_id = %s", [heavy])
        db.execute(
            """
            INSERT INTO profiles_event (source_id, message_id, type, event, name, user_id, anonymous_id, timestamp,
                                        received_at, properties, traits, context, integrations, profile_id,
                                        processed_at)
            SELECT 1, 'evt-' || g, 'track', (ARRAY['Product Viewed','Product Added','Order Completed'])[1 + g %% 3],
                   NULL, 'heavy', NULL, now() - (g || ' seconds')::interval, now(),
                   jsonb_build_object('product_id', g %% 2000, 'price', (g %% 240) + 0.99, 'currency', 'EUR'),
                   '{}', jsonb_build_object('page', jsonb_build_object('url', 'https://shop.example/p/' || g %% 2000),
                                            'userAgent', 'Mozilla/5.0', 'ip', '10.0.0.1'),
                   '{}', %s, now()
            FROM generate_series(1, %s) g
            """,
            [heavy, events],
        )
        db.commit()
    with psycopg.connect(url, autocommit=True) as db:
        db.execute("VACUUM ANALYZE")


class Client:
    """One keep-alive connection per thread."""

    def __init__(self, port: int, auth: str) -> None:
        self.port, self.auth = port, auth
        self.local = threading.local()

    def get(self, path: str) -> tuple[int, bytes]:
        conn = getattr(self.local, "conn", None)
        for attempt in (1, 2):
            if conn is None:
                conn = self.local.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
            try:
                conn.request("GET", path, headers={"Authorization": self.auth})
                response = conn.getresponse()
                body = response.read()
                if response.getheader("Connection", "").lower() == "close":
                    conn.close()
                    self.local.conn = None
                return response.status, body
            except (http.client.HTTPException, OSError):
                conn.close()
                conn = self.local.conn = None
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")


def open_loop(
    client: Client, paths: list[str], rate: float, check: Callable[[int, bytes, int], None], threads: int
) -> tuple[list[float], float]:
    """Send `paths[i]` at start + i/rate; latency from when each was due. Returns ms and seconds."""
    latencies = [0.0] * len(paths)
    nxt = iter(range(len(paths)))
    lock = threading.Lock()
    errors: list[str] = []
    start = time.perf_counter() + 0.2

    def worker() -> None:
        while True:
            with lock:
                i = next(nxt, None)
            if i is None:
                return
            due = start + i / rate
            delay = due - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            try:
                status, body = client.get(paths[i])
                check(status, body, i)
            except Exception as exc:
                errors.append(f"{paths[i]}: {exc}")
            latencies[i] = (time.perf_counter() - due) * 1000

    pool = [threading.Thread(target=worker, daemon=True) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    if errors:
        raise SetupError(f"{len(errors)} lookups failed, e.g. {errors[:3]}")
    return latencies, time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", default=os.environ.get("BENCH_DATABASE_URL",
                        "postgres://postgres@127.0.0.1:5432/cdp_bench_lookup"))  # fmt: skip
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/14", help="the app's cache (rate limit)")
    parser.add_argument("--allow-drop", action="store_true")
    parser.add_argument("--profiles", type=int, default=100_000)
    parser.add_argument("--events", type=int, default=100_000, help="events of the heavy profile")
    parser.add_argument("--rate", type=float, default=300.0, help="lookups per second, open loop")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--threads", type=int, default=16, help="client threads")
    parser.add_argument("--pages", type=int, default=100, help="timeline first pages, per API")
    parser.add_argument("--gunicorn-workers", type=int, default=4)
    parser.add_argument(
        "--worker-class",
        default="sync",
        help="gunicorn --worker-class; sync closes each connection, so every request goes to a free worker "
        "(gthread keeps connections on the worker that accepted them: queues behind a busy one)",
    )
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()

    var_dir = Path(tempfile.mkdtemp(prefix="cdp-bench-lookup-"))
    env = {
        **os.environ, "DATABASE_URL": args.database_url, "REDIS_URL": args.redis_url,
        "CELERY_BROKER_URL": args.redis_url, "CDP_VAR_DIR": str(var_dir), "SECRET_KEY": secrets.token_urlsafe(40),
        "DEBUG": "false", "LOG_LEVEL": "WARNING", "CDP_API_RATE_LIMIT": str(int(args.rate * 4)),
    }  # fmt: skip
    rng = random.Random(args.seed)
    server: Service | None = None
    try:
        say(f"re-creating {args.database_url.rsplit('/', 1)[-1]}, migrating, filling")
        recreate_database(args.database_url, args.allow_drop)
        _manage(env, "migrate", "--noinput")
        t0 = time.perf_counter()
        fill(args.database_url, profiles=args.profiles, events=args.events)
        say(f"{args.profiles:,} profiles and {args.events:,} events in {time.perf_counter() - t0:.1f} s")
        token = _manage(env, "create_access_token", "bench").strip().splitlines()[-1]
        auth = "Basic " + base64.b64encode(f"{token}:".encode()).decode()

        count = int(args.rate * args.seconds)
        targets = [rng.randint(1, args.profiles) for _ in range(count)]
        kinds = [KINDS[i % 3] for i in range(count)]
        with psycopg.connect(args.database_url) as db:
            md5 = dict(db.execute("SELECT id, md5(id::text) FROM profiles_profile WHERE id = ANY(%s)",
                                  [sorted(set(targets))]).fetchall())  # fmt: skip
            heavy = db.execute(
                "SELECT profile_id FROM profiles_identity WHERE kind='user_id' AND value='heavy'"
            ).fetchone()[0]
        values = [
            f"u{p}" if k == "user_id" else f"person{p}@example.com" if k == "email" else md5[p]
            for p, k in zip(targets, kinds, strict=True)
        ]
        paths = [TRAITS_PATH.format(ident=quote(f"{k}:{v}", safe=":@")) for k, v in zip(kinds, values, strict=True)]

        port = _free_port()
        server = Service("gunicorn", [PYTHON, "-m", "gunicorn", "cdp.wsgi", "--bind", f"127.0.0.1:{port}",
                                      "--workers", str(args.gunicorn_workers), "--worker-class", args.worker_class,
                                      "--log-level", "warning", "--backlog", "2048"],
                         env, var_dir / "gunicorn.log")  # fmt: skip
        _wait_healthy(port, server)
        client = Client(port, auth)

        def check(status: int, body: bytes, i: int) -> None:
            if status != 200:
                raise SetupError(f"{status} {body[:200]!r}")
            if json.loads(body)["traits"].get("name") != f"Person {targets[i]}":
                raise SetupError(f"wrong profile: {body[:200]!r}")

        warm = paths[: min(len(paths), int(args.rate * 2))]
        open_loop(client, warm, args.rate, check, args.threads)  # every worker opens its DB connection
        say(f"{count:,} lookups at {args.rate:.0f}/s")
        ours, took = open_loop(client, paths, args.rate, check, args.threads)
        achieved = count / took

        pages: dict[str, list[float]] = {}
        for name, path in (
            ("REST /api/v1/…/events", "/api/v1/profiles/user_id:heavy/events?limit=50"),
            ("Profile API /events", "/v1/spaces/default/collections/users/profiles/user_id:heavy/events?limit=50"),
        ):
            client.get(path)
            times = []
            for _ in range(args.pages):
                t = time.perf_counter()
                status, body = client.get(path)
                times.append((time.perf_counter() - t) * 1000)
                assert status == 200 and len(json.loads(body).get("results", json.loads(body).get("data"))) == 50
            pages[name] = times
        server.stop()
        server = None

        say("reference: psycopg SELECTs of the same rows")
        ref_lookup, ref_page = [], []
        with psycopg.connect(args.database_url, autocommit=True) as db:
            sql = ("SELECT p.key, p.traits FROM profiles_identity i JOIN profiles_profile p ON p.id = i.profile_id "
                   "WHERE i.kind = %s AND i.value = %s")  # fmt: skip
            for k, v in zip(kinds[:200], values[:200], strict=True):  # warm the plan cache
                db.execute(sql, [k, v]).fetchall()
            for k, v in zip(kinds, values, strict=True):
                t = time.perf_counter()
                db.execute(sql, [k, v]).fetchall()
                ref_lookup.append((time.perf_counter() - t) * 1000)
            page_sql = "SELECT * FROM profiles_event WHERE profile_id = %s ORDER BY timestamp DESC, id DESC LIMIT 51"
            db.execute(page_sql, [heavy]).fetchall()
            for _ in range(args.pages):
                t = time.perf_counter()
                db.execute(page_sql, [heavy]).fetchall()
                ref_page.append((time.perf_counter() - t) * 1000)
    except SetupError as exc:
        say(f"setup failed: {exc}")
        return 2
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(var_dir, ignore_errors=True)

    print()
    print(f"{'':44}{'p50 ms':>9}{'p99 ms':>9}")
    print(f"{f'lookups /traits at {achieved:,.0f}/s (n={count:,})':44}{pct(ours, 50):9.2f}{pct(ours, 99):9.2f}")
    print(f"{'reference: psycopg SELECT identity+profile':44}{pct(ref_lookup, 50):9.2f}{pct(ref_lookup, 99):9.2f}")
    print(
        f"{'ratio ours / reference':44}{pct(ours, 50) / pct(ref_lookup, 50):9.1f}"
        f"{pct(ours, 99) / pct(ref_lookup, 99):9.1f}"
    )
    for name, times in pages.items():
        label = f"first page of 50, {args.events:,} events: {name}"
        print(f"{label:44}{pct(times, 50):9.2f}{pct(times, 99):9.2f}")
    print(f"{'reference: psycopg SELECT … LIMIT 51':44}{pct(ref_page, 50):9.2f}{pct(ref_page, 99):9.2f}")
    worst_page = max(pct(times, 99) for times in pages.values())
    print(f"{'ratio ours (worst) / reference':44}{'':9}{worst_page / pct(ref_page, 99):9.1f}")
    lookup_ok = pct(ours, 99) < 25 and achieved >= args.rate * 0.95
    page_ok = worst_page < 100
    print(f"\nbar: lookups p99 < 25 ms at {args.rate:.0f}/s: {'met' if lookup_ok else 'MISSED'}; "
          f"timeline first page < 100 ms: {'met' if page_ok else 'MISSED'}")  # fmt: skip
    return 0 if lookup_ok and page_ok else 1


if __name__ == "__main__":
    sys.exit(main())
