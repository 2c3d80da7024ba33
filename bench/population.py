"""The generated population that `bench/traits.py` and `bench/audiences.py` share: by default
1,000,000 profiles and 10,000,000 events with a Zipf-like skew, written straight into
PostgreSQL with COPY (no HTTP, no pipeline: what is measured is what runs over them).

- Profiles: ids 1..N (`use_bench…` keys), traits name/email/plan/city. 85% have a `user_id`
  identity (`u<id>`), 70% an `email` (`p<id>@mail<k>.example`), every one an
  `anonymous_id` (`a<id>`); so about 10% are anonymous only.
- Events per profile: rank r (a fixed shuffle of the ids) gets about C / (r + 10) events, C
  chosen so that they add up to the total: the busiest person has ~80,000 events, the
  1,000th ~900, the median person ~1 to 2, and ~40% of people none. Timestamps are spread
  over the last 365 days and written in day order, as a real log grows.
- The mix (by event): page views 35% (8% of them on /pricing), Product Viewed 18%, Email
  Delivered 14%, Email Opened 12% (30% machine opens, `machine_open: true`), Product
  Added 6%, Products Searched 5%, Email Link Clicked 4%, Order Completed 3% (revenue,
  category, plan), Checkout Started 2%, Signed Up 1%. Categories and campaigns are Zipf too.

The database is dropped and re-created (its name must contain "bench"), migrated, filled,
indexed and analysed: about 4 to 6 minutes for the default size on a 2-core machine.
`--reuse` in the benchmarks skips this when the database already holds the same size.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import psycopg

CATEGORIES = ("shoes", "jackets", "shirts", "bags", "hats", "socks", "watches", "belts", "scarves", "gloves",
              "jeans", "dresses", "boots", "sandals", "coats", "wallets", "rings", "sunglasses", "tights",
              "ties")  # fmt: skip
PLANS = ("free", "starter", "pro", "team", "enterprise")
CITIES = ("Porto", "Lisbon", "Berlin", "Paris", "Oslo", "Madrid", "Rome", "Vienna")
CAMPAIGNS = tuple(f"campaign-{n:02d}" for n in range(40))
PAGES = (("Home", "/"), ("Pricing", "/pricing"), ("Product", "/p/"), ("Category", "/c/"), ("Blog", "/blog/"),
         ("Search", "/search"), ("Cart", "/cart"), ("Account", "/account"))  # fmt: skip
# (name, share): None is a page view.
MIX = ((None, 35), ("Product Viewed", 18), ("Email Delivered", 14), ("Email Opened", 12), ("Product Added", 6),
       ("Products Searched", 5), ("Email Link Clicked", 4), ("Order Completed", 3), ("Checkout Started", 2),
       ("Signed Up", 1))  # fmt: skip
DAYS = 365


@dataclass(frozen=True, slots=True)
class Size:
    profiles: int
    events: int


def _zipf_pick(rng: random.Random, cum: list[float], items: tuple[Any, ...]) -> Any:
    return rng.choices(items, cum_weights=cum)[0]


def _cum(n: int, s: float = 1.0) -> list[float]:
    out, t = [], 0.0
    for k in range(1, n + 1):
        t += 1 / k**s
        out.append(t)
    return out


def events_per_profile(size: Size, seed: int) -> list[int]:
    """Index i (profile id i + 1): its number of events, summing to `size.events`."""
    n = size.profiles
    rng = random.Random(seed)
    ranks = list(range(n))
    rng.shuffle(ranks)
    weights = [1.0 / (r + 10) for r in range(n)]
    scale = size.events / sum(weights)
    counts = [0] * n
    for i, r in enumerate(ranks):
        x = weights[r] * scale
        whole = int(x)
        counts[i] = whole + (1 if rng.random() < x - whole else 0)
    busiest = sorted(range(n), key=lambda i: ranks[i])[:100]
    diff = size.events - sum(counts)
    i = 0
    while diff != 0:  # stochastic rounding is off by a little: even it out on the busiest
        j = busiest[i % len(busiest)]
        step = 1 if diff > 0 else -1
        if counts[j] + step >= 0:
            counts[j] += step
            diff -= step
        i += 1
    return counts


def _esc(raw: bytes) -> bytes:
    return raw.replace(b"\\", b"\\\\")


def _ts(at: datetime) -> bytes:
    return at.isoformat().encode()


def profile_rows(size: Size, now: datetime, counts: list[int]) -> Iterator[bytes]:
    created = _ts(now - timedelta(days=DAYS + 5))
    for i in range(1, size.profiles + 1):
        traits = {"name": f"Person {i}", "plan": PLANS[i % len(PLANS)], "city": CITIES[i % len(CITIES)]}
        if i % 10 < 7:
            traits["email"] = f"p{i}@mail{i % 97}.example"
        seen = _ts(now - timedelta(minutes=(i * 7919) % (DAYS * 1440)))
        yield b"\t".join((f"use_bench{i:020d}".encode(), created, created, created, seen,
                          _esc(orjson.dumps(traits)), b"{}", b"0")) + b"\n"  # fmt: skip


def identity_rows(size: Size, now: datetime) -> Iterator[bytes]:
    at = _ts(now - timedelta(days=DAYS))
    for i in range(1, size.profiles + 1):
        pid = str(i).encode()
        yield b"anonymous_id\ta" + pid + b"\t" + pid + b"\t" + at + b"\t" + at + b"\tm\t1\t{}\n"
        if i % 20 < 17:
            yield b"user_id\tu" + pid + b"\t" + pid + b"\t" + at + b"\t" + at + b"\tm\t1\t{}\n"
        if i % 10 < 7:
            email = f"p{i}@mail{i % 97}.example".encode()
            yield b"email\t" + email + b"\t" + pid + b"\t" + at + b"\t" + at + b"\tm\t1\t{}\n"


def event_rows(size: Size, now: datetime, counts: list[int], seed: int) -> Iterator[bytes]:
    """Every event, in day order (oldest first), as COPY text rows."""
    rng = random.Random(seed + 1)
    names = tuple(m[0] for m in MIX)
    mix_cum = []
    t = 0
    for _, share in MIX:
        t += share
        mix_cum.append(t)
    cat_cum, camp_cum = _cum(len(CATEGORIES), 1.1), _cum(len(CAMPAIGNS), 0.9)
    # Bucket (profile, second of the year) by day so the log is written in time order.
    days: list[list[tuple[int, int]]] = [[] for _ in range(DAYS)]
    for i, n in enumerate(counts):
        pid = i + 1
        for _ in range(n):
            sec = rng.randrange(DAYS * 86400)
            days[sec // 86400].append((pid, sec))
    start = now - timedelta(days=DAYS)
    seq = 0
    empty = b"{}"
    for day in days:
        for pid, sec in day:
            seq += 1
            at = _ts(start + timedelta(seconds=sec, microseconds=seq % 1_000_000))
            name = rng.choices(names, cum_weights=mix_cum)[0]
            spid = str(pid).encode()
            user = (b"u" + spid) if pid % 20 < 17 else b"\\N"
            anon = b"a" + spid
            props: dict[str, Any]
            if name is None:
                title, path = PAGES[1] if rng.random() < 0.08 else rng.choice(PAGES)
                if path.endswith("/") and path != "/":
                    path += str(rng.randrange(500))
                props = {"path": path, "url": "https://shop.example.com" + path, "title": title}
                kind, event, page = b"page", b"\\N", title.encode()
            else:
                kind, event, page = b"track", name.encode(), b"\\N"
                if name in ("Product Viewed", "Product Added", "Checkout Started"):
                    cat = _zipf_pick(rng, cat_cum, CATEGORIES)
                    props = {"product_id": f"p{rng.randrange(5000)}", "category": cat,
                             "price": round(rng.uniform(5, 300), 2)}  # fmt: skip
                elif name == "Order Completed":
                    props = {"order_id": f"o{seq}", "revenue": round(rng.uniform(5, 500), 2), "currency": "EUR",
                             "category": _zipf_pick(rng, cat_cum, CATEGORIES), "plan": rng.choice(PLANS)}  # fmt: skip
                elif name.startswith("Email"):
                    props = {"campaign_name": _zipf_pick(rng, camp_cum, CAMPAIGNS), "email_subject": "Hello"}
                    if name == "Email Opened":
                        props["machine_open"] = rng.random() < 0.3
                    elif name == "Email Link Clicked":
                        props["url"] = "https://shop.example.com/sale"
                elif name == "Products Searched":
                    props = {"query": _zipf_pick(rng, cat_cum, CATEGORIES)}
                else:
                    props = {"method": "email"}
            yield b"\t".join((b"1", b"g%d" % seq, kind, event, page, user, anon, at, at,
                              _esc(orjson.dumps(props)), empty, empty, empty, spid, at)) + b"\n"  # fmt: skip


def _copy(db: psycopg.Connection[Any], sql: str, rows: Iterator[bytes], chunk: int = 1 << 20) -> int:
    n = 0
    buf: list[bytes] = []
    size = 0
    with db.cursor() as cur, cur.copy(sql) as copy:
        for row in rows:
            buf.append(row)
            size += len(row)
            n += 1
            if size >= chunk:
                copy.write(b"".join(buf))
                buf, size = [], 0
        if buf:
            copy.write(b"".join(buf))
    return n


def _drop_indexes(db: psycopg.Connection[Any], table: str) -> list[str]:
    """Drop the table's secondary indexes and unique constraints; return the statements that
    re-create them."""
    again = []
    for name, definition in db.execute(
        "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = %s::regclass AND contype = 'u'",
        (table,),
    ).fetchall():
        again.append(f'ALTER TABLE {table} ADD CONSTRAINT "{name}" {definition}')
        db.execute(f'ALTER TABLE {table} DROP CONSTRAINT "{name}"')
    for name, definition in db.execute(
        "SELECT i.indexname, i.indexdef FROM pg_indexes i WHERE i.tablename = %s AND i.indexname NOT IN "
        "(SELECT conname FROM pg_constraint WHERE conrelid = %s::regclass)",
        (table, table),
    ).fetchall():
        again.append(definition)
        db.execute(f'DROP INDEX "{name}"')
    return again


def fill(url: str, size: Size, *, seed: int = 11, say: Any = print) -> datetime:
    """Fill a migrated, empty database; return the `now` the population was generated at."""
    now = datetime.now(UTC).replace(microsecond=0)
    t0 = time.perf_counter()
    counts = events_per_profile(size, seed)
    with psycopg.connect(url) as db:
        db.execute("SET synchronous_commit = off")
        again = []
        for table in ("profiles_event", "profiles_identity", "profiles_profile"):
            again += _drop_indexes(db, table)
        n = _copy(db, "COPY profiles_profile (key, created_at, updated_at, first_seen_at, last_seen_at, traits, "
                      "trait_meta, merge_count) FROM STDIN", profile_rows(size, now, counts))  # fmt: skip
        say(f"  {n:,} profiles in {time.perf_counter() - t0:.0f} s")
        n = _copy(db, "COPY profiles_identity (kind, value, profile_id, first_seen_at, last_seen_at, "
                      "first_message_id, source_id, separations) FROM STDIN", identity_rows(size, now))  # fmt: skip
        say(f"  {n:,} identities in {time.perf_counter() - t0:.0f} s")
        n = _copy(
            db,
            "COPY profiles_event (source_id, message_id, type, event, name, user_id, anonymous_id, timestamp, "
            "received_at, properties, traits, context, integrations, profile_id, processed_at) FROM STDIN",
            event_rows(size, now, counts, seed),
        )
        say(f"  {n:,} events in {time.perf_counter() - t0:.0f} s")
        db.commit()
        db.execute("SET maintenance_work_mem = '1GB'")
        for statement in again:
            db.execute(statement)
        db.execute(
            "SELECT setval(pg_get_serial_sequence('profiles_profile', 'id'), (SELECT max(id) FROM profiles_profile))"
        )
        db.execute(
            "SELECT setval(pg_get_serial_sequence('profiles_event', 'id'), (SELECT max(id) FROM profiles_event))"
        )
        db.commit()
        say(f"  indexes in {time.perf_counter() - t0:.0f} s")
    with psycopg.connect(url, autocommit=True) as db:
        db.execute("VACUUM (ANALYZE) profiles_profile")
        db.execute("VACUUM (ANALYZE) profiles_identity")
        db.execute("VACUUM (ANALYZE) profiles_event")
        db.execute(
            "CREATE TABLE IF NOT EXISTS bench_population (profiles bigint, events bigint, generated_at timestamptz)"
        )
        db.execute("DELETE FROM bench_population")
        db.execute("INSERT INTO bench_population VALUES (%s, %s, %s)", (size.profiles, size.events, now))
    say(f"  analysed in {time.perf_counter() - t0:.0f} s")
    return now


def existing(url: str, size: Size) -> datetime | None:
    """When the database already holds a population of this size: when it was generated."""
    try:
        with psycopg.connect(url) as db:
            row = db.execute("SELECT profiles, events, generated_at FROM bench_population").fetchone()
    except psycopg.Error:
        return None
    if row and row[0] == size.profiles and row[1] == size.events:
        return row[2]
    return None


# What `prepare` vacuums: what an earlier benchmark run deleted and wrote.
_VACUUMED = ("profiles_computedtraitvalue", "profiles_computedtraitchange", "profiles_profilechange",
             "audiences_audiencemember", "audiences_membership", "audiences_audiencechange",
             "profiles_event", "profiles_profile", "profiles_identity")  # fmt: skip


def prepare(url: str, size: Size, env: dict[str, str], *, reuse: bool, say: Any = print) -> None:
    """The population in `url`, for a benchmark run: kept when `reuse` and it holds `size`
    (migrated to this code), else generated; then no computed traits nor audiences of an
    earlier run, and the tables vacuumed and analysed whether or not the server runs
    autovacuum (this machine's does not), so each run starts alike."""
    from bench.ingest import _manage, recreate_database

    if reuse and existing(url, size):
        say("reusing the population already there (migrated to this code)")
        _manage(env, "migrate", "--noinput")
    else:
        say(f"generating {size.profiles:,} profiles and {size.events:,} events (not timed)")
        recreate_database(url, allow_drop=False)
        _manage(env, "migrate", "--noinput")
        fill(url, size, say=say)
    _manage(env, "shell", "-c", "from audiences.models import Audience; from profiles.computed.models import "
            "ComputedTrait; Audience.objects.all().delete(); ComputedTrait.objects.all().delete()")  # fmt: skip
    with psycopg.connect(url, autocommit=True) as db:
        for table in _VACUUMED:
            db.execute(f"VACUUM (ANALYZE) {table}")


def django_in(env: dict[str, str]) -> None:
    """Set Django up in this process on the benchmark's settings (to call the app's code)."""
    import os

    os.environ.update(env)
    import django

    django.setup()
