#!/usr/bin/env python3
"""Admin benchmark: the profile list on 1M profiles, the profile page of a person with 100k
events, and the marketer's pages (the overview, audiences, the builder) on 10M events, against
raw psycopg SELECTs of the same rows where a page has one.

    .venv/bin/python bench/admin_pages.py                 # 1,000,000 profiles, 10,000,000 events
    .venv/bin/python bench/admin_pages.py --profiles 200000 --events 20000 --other-events 2000000 --reuse

What one run does:

1. Drops and re-creates a PostgreSQL database (`cdp_bench_admin`; a name without "bench" is
   refused), migrates it, and fills it with `INSERT … SELECT generate_series` (not timed):
   `--profiles` live profiles with name/email/city traits and spread last-seen times, a
   user_id identity for each and an email identity for 70%, 5% merged-away tombstones,
   `--events` events on one person (85% track, 10% page, 5% email opens) over a year and
   `--other-events` on everyone else over a year (page views, product views and adds, orders,
   email opens, a third of them machine opens); then VACUUM ANALYZE; then the marketer's data
   (`bench/admin_audiences.py`: six audiences with 120 days of membership history, hourly
   ingest counters, computed traits, the event names). `--reuse` skips this step.
2. Renders each admin page through Django's test client as a logged-in superuser (the
   whole stack but the socket: middleware, the admin, templates), `--repeat` times after one
   warm-up, and the reference: the same rows read with one raw psycopg SELECT.
3. Prints p50/p99 of ours, the reference's p50 and their ratio. The bars: a timeline page
   under 100 ms (the issue's), every list page under 200 ms, every marketer's page under
   1,000 ms (the audiences issue's). The builder's preview (a POST that counts over the whole
   event log) is timed and reported without a bar.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if sys.prefix == sys.base_prefix and (ROOT / ".venv/bin/python").exists():
    os.execv(str(ROOT / ".venv/bin/python"), [str(ROOT / ".venv/bin/python"), *sys.argv])
sys.path.insert(0, str(ROOT))

FILL = [
    """INSERT INTO profiles_profile (key, created_at, updated_at, first_seen_at, last_seen_at, traits, trait_meta,
       merge_count)
       SELECT 'use_bench' || lpad(i::text, 20, '0'), now(), now(), now() - interval '400 days',
              now() - (i % 525600) * interval '1 minute',
              jsonb_build_object('name', 'Person ' || i, 'email', 'p' || i || '@mail' || (i % 97) || '.example',
                                 'city', (ARRAY['Porto','Lisbon','Berlin','Paris','Oslo'])[1 + i % 5],
                                 'plan', (ARRAY['free','pro','team'])[1 + i % 3]),
              '{}'::jsonb, 0
       FROM generate_series(1, %(profiles)s) i""",
    """UPDATE profiles_profile SET merged_into_id = id - 1 WHERE id % 20 = 0""",
    """INSERT INTO profiles_identity (kind, value, profile_id, first_seen_at, last_seen_at, first_message_id,
       source_id, separations)
       SELECT 'user_id', 'u' || id, id, now(), now(), 'm', 1, '{}'::jsonb FROM profiles_profile""",
    """INSERT INTO profiles_identity (kind, value, profile_id, first_seen_at, last_seen_at, first_message_id,
       source_id, separations)
       SELECT 'email', traits->>'email', id, now(), now(), 'm', 1, '{}'::jsonb FROM profiles_profile
       WHERE id % 10 < 7""",
    """INSERT INTO profiles_event (source_id, message_id, type, event, name, user_id, timestamp, received_at,
       properties, traits, context, integrations, profile_id, processed_at)
       SELECT 1, 'big-' || i, CASE WHEN i % 20 < 17 THEN 'track' WHEN i % 20 < 19 THEN 'page' ELSE 'track' END,
              CASE WHEN i % 20 < 17 THEN (ARRAY['Product Viewed','Product Added','Order Completed'])[1 + i % 3]
                   WHEN i % 20 = 19 THEN 'Email Opened' END,
              CASE WHEN i % 20 IN (17, 18) THEN 'Product page' END, 'u1',
              now() - (i * interval '5 minutes'), now(),
              jsonb_build_object('url', 'https://shop.example.com/p/' || i, 'email_subject', 'Sale ' || (i % 12),
                                 'campaign_name', 'c' || (i % 12), 'revenue', i % 100),
              '{}'::jsonb, jsonb_build_object('page', jsonb_build_object('path', '/p/' || i)), '{}'::jsonb, 1, now()
       FROM generate_series(1, %(events)s) i""",
    """INSERT INTO profiles_event (source_id, message_id, type, event, name, user_id, timestamp, received_at,
       properties, traits, context, integrations, profile_id, processed_at)
       SELECT 1, 'other-' || i, CASE WHEN i % 10 < 4 THEN 'page' ELSE 'track' END,
              CASE WHEN i % 10 >= 4 THEN (ARRAY['Product Viewed', 'Product Viewed', 'Product Added',
                                               'Order Completed', 'Email Opened', 'Email Opened'])[i % 10 - 3] END,
              CASE WHEN i % 10 < 4 THEN 'Product page' END, 'u' || p,
              now() - ((i * 7919) % 525600) * interval '1 minute', now(),
              CASE WHEN i % 10 >= 8 THEN jsonb_build_object('machine_open', i % 3 = 0,
                                                            'campaign_name', 'c' || (i % 12),
                                                            'email_subject', 'Sale ' || (i % 12))
                   ELSE jsonb_build_object('url', 'https://shop.example.com/p/' || (i % 5000), 'revenue', i % 100)
              END,
              '{}'::jsonb, '{}'::jsonb, '{}'::jsonb, p, now()
       FROM generate_series(1::bigint, %(other_events)s) i,
            LATERAL (SELECT 2 + (i * 104729) % (%(profiles)s - 1) AS p) x""",
]


def fill(url: str, args: argparse.Namespace) -> None:
    import psycopg

    base, _, name = url.rpartition("/")
    if "bench" not in name:
        sys.exit(f"refusing to drop {name!r}: its name lacks 'bench'")
    with psycopg.connect(f"{base}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"')
    env = {**os.environ, "DATABASE_URL": url}
    subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env, check=True)
    started = time.perf_counter()
    with psycopg.connect(url, autocommit=True) as conn:
        sizes = {"profiles": args.profiles, "events": args.events, "other_events": args.other_events}
        for sql in FILL:
            for key, value in sizes.items():
                sql = sql.replace(f"%({key})s", str(int(value)))
            conn.execute(sql.encode())  # bytes: no placeholders, so % is the modulo operator
        conn.execute("VACUUM ANALYZE")
    print(f"filled in {time.perf_counter() - started:.0f} s", flush=True)


def timed(fn: Callable[[], object], repeat: int) -> list[float]:
    fn()
    samples = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t) * 1000)
    return samples


def p99(samples: list[float]) -> float:
    return sorted(samples)[min(len(samples) - 1, int(len(samples) * 0.99))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", default="postgres://postgres@127.0.0.1:5432/cdp_bench_admin")
    parser.add_argument("--profiles", type=int, default=1_000_000)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--other-events", type=int, default=9_900_000)
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--reuse", action="store_true", help="keep the database a previous run filled")
    parser.add_argument("--no-previews", action="store_true", help="skip timing the builder's previews")
    parser.add_argument("--refill-audiences", action="store_true",
                        help="with --reuse: fill the marketer's data (audiences, counters) again")  # fmt: skip
    args = parser.parse_args()
    if not args.reuse:
        fill(args.database_url, args)

    os.environ.update(DATABASE_URL=args.database_url, DJANGO_SETTINGS_MODULE="cdp.settings",
                      ALLOWED_HOSTS="testserver,localhost")  # fmt: skip
    import django

    django.setup()
    import admin_audiences  # bench/, beside this file
    import psycopg
    from django.contrib.auth.models import User
    from django.test import Client

    from profiles.selectors import profile_events

    if not args.reuse or args.refill_audiences:
        started = time.perf_counter()
        admin_audiences.fill_audiences()
        print(f"audiences filled in {time.perf_counter() - started:.0f} s", flush=True)
    user, _ = User.objects.get_or_create(username="bench", defaults={"is_staff": True, "is_superuser": True})
    client = Client()
    client.force_login(user)
    _, cursor_50 = profile_events(profile_id=1, limit=2500)  # 50 pages down
    assert cursor_50 is not None
    raw = psycopg.connect(args.database_url, autocommit=True)
    # The references read the same rows with the same indexes, minus everything around them.
    order = "ORDER BY last_seen_at DESC, id DESC LIMIT 51"
    live = "SELECT * FROM profiles_profile WHERE merged_into_id IS NULL"
    email_ids = "SELECT profile_id FROM profiles_identity WHERE kind = 'email' AND value "
    email_exact, email_like = email_ids + "= 'p777777@mail64.example'", email_ids + "LIKE '%p77777%'"
    trait_text = "upper((jsonb_path_query_array(traits, 'strict $.*'))::text)"
    events = "SELECT * FROM profiles_event WHERE profile_id = 1 {} ORDER BY timestamp DESC, id DESC LIMIT 51"
    cases = [
        ("list", "/admin/profiles/profile/", f"{live} {order}"),
        ("list, last seen 7 days", "/admin/profiles/profile/?seen=7d",
         f"{live} AND last_seen_at >= now() - interval '7 days' {order}"),
        ("list, has email", "/admin/profiles/profile/?email=yes",
         f"{live} AND EXISTS (SELECT 1 FROM profiles_identity i WHERE i.profile_id = profiles_profile.id "
         f"AND i.kind = 'email') {order}"),
        ("list, search an email", "/admin/profiles/profile/?q=p777777%40mail64.example",
         f"{live} AND id IN ({email_exact}) {order}"),
        ("list, search a fragment", "/admin/profiles/profile/?q=p77777",
         f"{live} AND id IN ({email_like}) {order}"),
        ("list, search a trait", "/admin/profiles/profile/?q=Person+123456",
         f"{live} AND {trait_text} LIKE '%PERSON 123456%' {order}"),
        ("profile page (timeline page 1)", "/admin/profiles/profile/1/change/", events.format("")),
        ("profile page, timeline page 51", f"/admin/profiles/profile/1/change/?cursor={cursor_50.encode()}",
         events.format(f"AND (timestamp, id) < ('{cursor_50.timestamp.isoformat()}', {cursor_50.id})")),
        ("profile page, type=page", "/admin/profiles/profile/1/change/?type=page", events.format("AND type = 'page'")),
        ("profile page, Email Opened", "/admin/profiles/profile/1/change/?event=Email+Opened",
         events.format("AND event = 'Email Opened'")),
    ]  # fmt: skip
    marketer = admin_audiences.cases()
    cases += [(label, url, ref or "SELECT 1") for label, url, ref in marketer]
    no_reference = {label for label, _, ref in marketer if ref is None}
    print(f"{'page':40} {'ours p50':>9} {'p99':>8} {'ref p50':>8} {'ratio':>7}  bar")
    failed = False
    for label, url, reference in cases:

        def ours(url: str = url) -> None:
            response = client.get(url)
            assert response.status_code == 200, (url, response.status_code)

        mine = timed(ours, args.repeat)
        ref = timed(lambda reference=reference: raw.execute(reference.encode()).fetchall(), args.repeat)
        bar = 1000 if any(label == m[0] for m in marketer) else 100 if label.startswith("profile") else 200
        ok = p99(mine) < bar
        failed |= not ok
        shown = (
            ("      —", "      —")
            if label in no_reference
            else (f"{statistics.median(ref):7.2f}ms", f"{statistics.median(ref) / statistics.median(mine):7.3f}")
        )
        print(f"{label:40} {statistics.median(mine):8.1f}ms {p99(mine):7.1f}ms {shown[0]:>9} {shown[1]:>7}  "
              f"p99 < {bar} ms {'ok' if ok else 'MISSED'}", flush=True)  # fmt: skip
    for label, body in (
        [] if args.no_previews else admin_audiences.previews()
    ):  # once each: a preview may take its 30 s statement timeout
        started = time.perf_counter()
        response = client.post("/admin/audiences/audience/preview/", body, content_type="application/json")
        took = (time.perf_counter() - started) * 1000
        answer = f"size {response.json()['size']:,}" if response.status_code == 200 else f"HTTP {response.status_code}"
        print(f"{label:40} {took:8.1f}ms  {answer} (no bar: it counts over the whole event log)", flush=True)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
