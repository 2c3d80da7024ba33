#!/usr/bin/env python3
"""Identity benchmark: events/s resolved end to end, and how right the profiles are.

    .venv/bin/python bench/identity.py --quick           # 10,000 people (67,571 events), ~40 s
    .venv/bin/python bench/identity.py                   # 100,000 people (672,171 events)
    .venv/bin/python bench/identity.py --people 30000 --worker-pool solo --celery-workers 2

On the 2-core machine this was written on, the default run takes about 3 minutes (2026-11-30:
6,986 to 8,745 events/s end to end over five runs, 210 to 270 µs of CPU an event, the pipeline
alone 9,500 to 11,500 events/s): use `--people` to trade size for time.

What one run does, in order:

1. Drops and re-creates a dedicated database (`cdp_bench_identity`; it refuses a name
   without "bench" unless `--allow-drop`), migrates it (which seeds Segment's default
   identity settings: user_id 1 ever, email 5 a year, anonymous_id 5 a month, the block
   list) and creates a source.
2. Generates a population with a known truth, before anything is timed: `--people` people,
   each with 1-4 devices (Zipf) and a few events per device (Zipf); 30% log in later on
   one or more of their devices (identify userId + anonymousId, then events carry both),
   10% give an email (in identify traits; people without a login give it in an identify
   or a track's context.traits, sometimes in another case). Adversarial parts:
   - family devices: one anonymousId shared by 2-4 people; its owner browses on it and
     logs in, then each other member logs in on it (identify with their own userId and
     the shared anonymousId) and keeps using it;
   - bogus ids: buggy devices send userId "null", "undefined" or "0" with their real
     anonymousId, and some logged-in events an all-zero anonymousId;
   - one email (test@example.com) claimed by 5,000 distinct user ids (scaled down with
     `--people`), in identify traits.
   Every message has a unique messageId (its index is in the last 12 hex digits) and a
   historical `timestamp` (no sentAt, so the app keeps it); timestamps increase per
   person, and the stream is sent in global time order, shuffled within small windows.
3. Starts gunicorn and a Celery worker (the edge keeps each request's messages as a batch;
   the pipeline task `ingest.process_events` resolves them and writes them to the event
   log with their profile), warms them up, empties the profile tables, then posts every
   `/v1/batch` body from `--concurrency` threads (keep-alive http.client) while polling for
   batches still waiting (an EXISTS every 0.5 s, 0.1 s near the end; a count every 20 s for
   the log). End-to-end events/s = events / (first POST until no batch is left, every
   event acknowledged). Also printed: the pipeline's rate
   alone once the load is over, where PostgreSQL's busy backends were (sampled from
   pg_stat_activity), and the CPU each part used.
4. Stops the servers and reads each event's live profile in one query (events join
   profiles; `COALESCE(merged_into_id, id)`, with tombstone chains checked separately).
5. Reference, same run: a plain-Python union-find (path compression) over the same
   co-occurrence edges (identifiers seen together in one message, blocked values
   dropped), timed, with its own precision and recall.
6. Prints events/s (ours, union-find, ratio), pairwise precision and recall for both,
   where the CPU went, and for each error a breakdown by kind of person with examples
   (identifiers, the merges and demotions the app recorded).

Metrics (pairs counted with contingency tables, never O(n^2)):
- precision: of the pairs of events placed in one profile, the share that belong to one
  true person. 1.0 means no two people were merged.
- recall: of the "linkable" pairs, the share placed in one profile. Two events of a person
  are linkable when connected through identifiers only that person ever used (not the
  family device's anonymousId, not the shared email, not a blocked value).

Bars (on a 2-core machine, load generator included): 5,000 events/s end to end (goal
10,000); precision 1.0; recall >= 0.99. Exit status: 0 when precision is 1.0, recall at
least 0.99 and every event was stored and processed; 1 otherwise; 2 on a setup error.
"""

from __future__ import annotations

import argparse
import base64
import bisect
import contextlib
import hashlib
import itertools
import json
import os
import platform
import random
import re
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
_VENV_PYTHON = ROOT / ".venv" / "bin" / "python"
try:
    import orjson
    import psycopg
except ImportError:  # a Python outside the project's virtualenv: re-run this script inside it
    if _VENV_PYTHON.exists() and Path(sys.prefix).resolve() != (ROOT / ".venv").resolve():
        os.execv(str(_VENV_PYTHON), [str(_VENV_PYTHON), str(Path(__file__).resolve()), *sys.argv[1:]])
    raise
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.ingest import (  # noqa: E402
    CpuMeter,
    Service,
    SetupError,
    _celery_purge,
    _free_port,
    _manage,
    _wait_healthy,
    app_env,
    bench_main,
    percentile,
    post_all,
    recreate_database,
    tear_down,
)

PYTHON = sys.executable
QUICK_PEOPLE = 10_000
SHARED_EMAIL = "test@example.com"
BOGUS_USER_IDS = ("null", "undefined", "0")
BOGUS_ANONYMOUS_ID = "00000000-0000-0000-0000-000000000000"
# The profile tables a run fills (emptied after the warm-up).
PROFILE_TABLES = (
    "profiles_event", "profiles_eventbatch", "profiles_profile", "profiles_identity", "profiles_identitylink",
    "profiles_merge", "profiles_demotion", "profiles_identityaudit", "ingest_ingestcounter",
)  # fmt: skip
# With --computed-traits or --audiences, what they wrote for the warm-up's profiles goes too
# (values cascade from profiles; these hold plain profile ids). The change feed stays: its
# consumers' cursors point into it.
LIVE_TABLES = ("profiles_computedtraitchange", "audiences_audiencemember", "audiences_membership",
               "audiences_audiencechange")  # fmt: skip


def say(message: str) -> None:
    print(f"[identity] {message}", file=sys.stderr, flush=True)


# --- Identifiers, as the spec defines them (independent of the app's code) ------------------------

# Segment's default block list: exact values, any case, and /^[0-]*$/.
_BLOCKED_EXACT = frozenset(("null", "undefined", "anonymous", "-1", "0"))
_BLOCKED_RE = re.compile(r"^[0-]*$")

IdKey = tuple[str, str]


def _usable(value: str | None) -> str | None:
    if value is None:
        return None
    value = value.strip()
    if not value or value.lower() in _BLOCKED_EXACT or _BLOCKED_RE.search(value):
        return None
    return value


def identifiers_of(user_id: str | None, anonymous_id: str | None, email: str | None) -> tuple[IdKey, ...]:
    """The identifiers a message carries once blocked values are dropped; emails lowercased."""
    found: list[IdKey] = []
    if (u := _usable(user_id)) is not None:
        found.append(("user_id", u))
    if (a := _usable(anonymous_id)) is not None:
        found.append(("anonymous_id", a))
    if (e := _usable(email)) is not None:
        found.append(("email", e.lower()))
    return tuple(found)


# --- The population -----------------------------------------------------------------------------

_PAGES = (("Home", "/"), ("Category", "/c/shoes"), ("Category", "/c/jackets"), ("Product", "/p/"),
          ("Search", "/search"), ("Cart", "/cart"), ("Blog", "/blog/running"), ("Account", "/account"))  # fmt: skip
_TRACKS = ("Product Viewed", "Product Viewed", "Product Viewed", "Product List Viewed", "Products Searched",
           "Product Added", "Cart Viewed", "Checkout Started", "Order Completed")  # fmt: skip
_USER_AGENTS = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Safari/605",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Mobile",
)
_FIRST = ("Ada", "Grace", "Alan", "Edsger", "Barbara", "Donald", "Frances", "Ken", "Margaret", "Linus")
_LAST = ("Lovelace", "Hopper", "Turing", "Dijkstra", "Liskov", "Knuth", "Allen", "Thompson", "Hamilton")
_HOST = "https://shop.example.com"
_DAY_MS = 86_400_000
_MAX_DEVICES = 4
_MAX_EVENTS_PER_DEVICE = 60


@dataclass(slots=True)
class Person:
    index: int
    devices: list[str]  # anonymous ids, one per device
    user_id: str | None = None
    email: str | None = None  # as the person types it (case may vary); None: gives none
    roles: set[str] = field(default_factory=set)
    family_device: str | None = None  # the shared anonymous id of the family the person belongs to
    login_ms: int | None = None  # a family owner's first login on the family device


@dataclass(slots=True)
class Ev:
    """One message before it is serialised."""

    ts: int  # ms since the population's epoch
    seq: int  # tie-break, creation order
    person: int
    type: str  # page | track | identify
    anonymous_id: str | None
    user_id: str | None
    email: str | None = None
    email_in: str | None = None  # "traits" (identify) | "context" (context.traits)
    name: str | None = None


@dataclass(slots=True)
class Population:
    people: list[Person]
    events: list[Ev]  # in send order
    epoch: datetime
    family_devices: int
    claimants: int


def _zipf_cum(n: int, s: float) -> list[float]:
    return list(itertools.accumulate(1.0 / k**s for k in range(1, n + 1)))


class PopulationBuilder:
    def __init__(
        self, *, seed: int, people: int, claimants: int, families: int, family_gap: int = 0, prefix: str = ""
    ) -> None:
        self.rng = random.Random(seed)
        self.family_gap = family_gap
        self.n = people
        self.claimants = claimants
        self.families = families
        self.prefix = prefix
        self.events: list[Ev] = []
        self.seq = itertools.count()
        self.device_cum = _zipf_cum(_MAX_DEVICES, 1.6)
        self.events_cum = _zipf_cum(_MAX_EVENTS_PER_DEVICE, 1.8)

    def _uuid(self) -> str:
        h = f"{self.rng.getrandbits(128):032x}"
        return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{'89ab'[int(h[16], 16) & 3]}{h[17:20]}-{h[20:]}"

    def _emit(self, ts: int, person: Person, type_: str, anonymous_id: str | None, user_id: str | None,
              email: str | None = None, email_in: str | None = None, name: str | None = None) -> None:  # fmt: skip
        self.events.append(Ev(ts, next(self.seq), person.index, type_, anonymous_id, user_id, email, email_in, name))

    def _browse(self, ts: int, person: Person, anonymous_id: str | None, user_id: str | None) -> None:
        rng = self.rng
        if rng.random() < 0.35:
            title, path = rng.choice(_PAGES)
            self._emit(ts, person, "page", anonymous_id, user_id, name=title + "|" + path)
        else:
            self._emit(ts, person, "track", anonymous_id, user_id, name=rng.choice(_TRACKS))

    def _gap(self) -> int:
        rng = self.rng
        if rng.random() < 0.15:  # a new visit, days later
            return int(rng.uniform(0.5, 4.0) * _DAY_MS)
        return int(rng.expovariate(1 / 120_000)) + 1_000  # within a visit: ~2 minutes

    def build(self) -> Population:
        rng, p = self.rng, self.prefix
        people: list[Person] = []
        for i in range(self.n):
            n_devices = rng.choices(range(1, _MAX_DEVICES + 1), cum_weights=self.device_cum)[0]
            person = Person(i, [self._uuid() for _ in range(n_devices)])
            if rng.random() < 0.30:
                person.user_id = f"{p}usr_{i:07d}"
                person.roles.add("identified")
            if rng.random() < 0.10:
                first, last = rng.choice(_FIRST), rng.choice(_LAST)
                person.email = f"{first.lower()}.{last.lower()}.{i}@{p}example.org"
                person.roles.add("email" if person.user_id else "email_only")
            if rng.random() < 0.03:
                person.roles.add("bogus")
            people.append(person)

        identified = [x for x in people if x.user_id]
        rng.shuffle(identified)
        claimants = identified[: self.claimants]
        for person in claimants:
            person.email = SHARED_EMAIL
            person.roles.add("claimant")
        free = identified[self.claimants :]
        families: list[tuple[Person, list[Person]]] = []
        for _ in range(self.families):
            size = rng.randint(2, 4)
            if len(free) < size:
                break
            members, free = free[:size], free[size:]
            owner, others = members[0], members[1:]
            owner.roles.add("family_owner")
            owner.family_device = owner.devices[0]
            for m in others:
                m.roles.add("family_member")
                m.family_device = owner.devices[0]
            families.append((owner, others))

        span = 60 * _DAY_MS
        for person in people:
            self._timeline(person, start=rng.randrange(span))
        # Members log in on the family device days after its owner, and at least `family_gap`
        # events later in the stream: concurrent requests reorder a few seconds of traffic, and
        # a member's login resolved before the owner's would (legitimately, in arrival order)
        # take over the device and the owner's anonymous events on it.
        stream = sorted(e.ts for e in self.events)
        for owner, others in families:
            assert owner.login_ms is not None and owner.family_device is not None
            after = bisect.bisect_right(stream, owner.login_ms) + self.family_gap
            floor = stream[after] if after < len(stream) else stream[-1] + _DAY_MS
            for m in others:
                for _ in range(rng.randint(1, 3)):
                    t = max(owner.login_ms + int(rng.uniform(1.0, 20.0) * _DAY_MS), floor + rng.randrange(2 * _DAY_MS))
                    self._emit(t, m, "identify", owner.family_device, m.user_id, m.email, "traits")
                    for _ in range(rng.randint(0, 3)):
                        t += self._gap() % (30 * 60_000)
                        self._browse(t, m, owner.family_device, m.user_id)

        self.events.sort(key=lambda e: (e.ts, e.seq))
        epoch = datetime.now(UTC).replace(microsecond=0) - timedelta(days=150)
        return Population(people, self.events, epoch, len(families), len(claimants))

    def _timeline(self, person: Person, start: int) -> None:
        rng = self.rng
        for d, anonymous_id in enumerate(person.devices):
            t = start + (0 if d == 0 else int(rng.uniform(0, 10) * _DAY_MS))
            n = rng.choices(range(1, _MAX_EVENTS_PER_DEVICE + 1), cum_weights=self.events_cum)[0]
            logs_in = person.user_id is not None and (d == 0 or rng.random() < 0.5)
            # Log in after at least one anonymous event; the family owner logs in early.
            login_at = (1 if person.family_device == anonymous_id else rng.randint(1, n)) if logs_in else None
            email_at = None
            if person.email and person.user_id is None and (d == 0 or rng.random() < 0.5):
                email_at = rng.randint(0, n)
            bogus_device = "bogus" in person.roles and d == 0
            logged_in = False
            for i in range(n + 1):
                if i == login_at:
                    self._emit(t, person, "identify", anonymous_id, person.user_id, person.email, "traits")
                    if person.family_device == anonymous_id and person.login_ms is None:
                        person.login_ms = t
                    logged_in = True
                    t += rng.randint(200, 5_000)
                if i == email_at:
                    typed = person.email
                    assert typed is not None
                    if rng.random() < 0.2:  # typed in another case, with a stray space
                        typed = f" {typed.title()} "
                    if rng.random() < 0.5:
                        self._emit(t, person, "identify", anonymous_id, None, typed, "traits")
                    else:
                        self._emit(t, person, "track", anonymous_id, None, typed, "context", "Newsletter Subscribed")
                    t += rng.randint(200, 5_000)
                if i < n:
                    if logged_in:
                        anon = BOGUS_ANONYMOUS_ID if rng.random() < 0.01 else anonymous_id
                        self._browse(t, person, anon, person.user_id)
                    else:
                        self._browse(t, person, anonymous_id, rng.choice(BOGUS_USER_IDS) if bogus_device else None)
                    t += self._gap()


def message_id(index: int, rng: random.Random) -> str:
    h = f"{rng.getrandbits(80):020x}"
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-a{h[17:20]}-{index:012x}"


def index_of(message_id: str) -> int:
    return int(message_id[-12:], 16)


def _iso(at: datetime) -> str:
    return at.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def to_message(ev: Ev, mid: str, epoch: datetime) -> dict[str, Any]:
    message: dict[str, Any] = {"type": ev.type, "messageId": mid}
    if ev.anonymous_id is not None:
        message["anonymousId"] = ev.anonymous_id
    if ev.user_id is not None:
        message["userId"] = ev.user_id
    ua = _USER_AGENTS[ev.person % len(_USER_AGENTS)]
    path = "/account"
    if ev.type == "page":
        title, path = (ev.name or "Home|/").split("|", 1)
        message["name"] = title
        message["properties"] = {"title": f"{title} | Shop", "path": path, "url": f"{_HOST}{path}"}
    elif ev.type == "track":
        message["event"] = ev.name
        message["properties"] = {"product_id": str(500_000 + ev.seq % 2000), "price": 19.99, "currency": "EUR"}
    else:
        traits: dict[str, Any] = {"plan": ("free", "pro")[ev.person % 2]}
        if ev.user_id is not None:
            traits["name"] = f"{_FIRST[ev.person % len(_FIRST)]} {_LAST[ev.person % len(_LAST)]}"
        if ev.email is not None and ev.email_in == "traits":
            traits["email"] = ev.email
        message["traits"] = traits
    context: dict[str, Any] = {
        "library": {"name": "analytics.js", "version": "next-1.70.0"}, "userAgent": ua, "locale": "en-US",
        "ip": f"10.{ev.person >> 16 & 255}.{ev.person >> 8 & 255}.{ev.person & 255}",
        "page": {"path": path, "url": f"{_HOST}{path}"},
    }  # fmt: skip
    if ev.email is not None and ev.email_in == "context":
        context["traits"] = {"email": ev.email}
    message["context"] = context
    message["timestamp"] = _iso(epoch + timedelta(milliseconds=ev.ts))
    return message


@dataclass(slots=True)
class Workload:
    population: Population
    bodies: list[bytes]
    counts: list[int]
    truth: list[int]  # event index -> person
    ids: list[tuple[IdKey, ...]]  # event index -> its usable identifiers
    message_ids: list[str]  # event index -> messageId
    message_bytes: float


def build_workload(pop: Population, *, batch_size: int, shuffle_window: int, seed: int) -> Workload:
    rng = random.Random(seed ^ 0x5EED)
    events = pop.events
    if shuffle_window > 1:
        for start in range(0, len(events), shuffle_window):
            window = events[start : start + shuffle_window]
            rng.shuffle(window)
            events[start : start + shuffle_window] = window
    bodies: list[bytes] = []
    counts: list[int] = []
    truth: list[int] = []
    ids: list[tuple[IdKey, ...]] = []
    message_ids: list[str] = []
    total_bytes = 0
    for start in range(0, len(events), batch_size):
        chunk = []
        for i in range(start, min(start + batch_size, len(events))):
            ev = events[i]
            message_ids.append(message_id(i, rng))
            chunk.append(to_message(ev, message_ids[-1], pop.epoch))
            truth.append(ev.person)
            ids.append(identifiers_of(ev.user_id, ev.anonymous_id, ev.email))
        body = orjson.dumps({"batch": chunk})
        total_bytes += len(body)
        bodies.append(body)
        counts.append(len(chunk))
    return Workload(pop, bodies, counts, truth, ids, message_ids, total_bytes / max(len(events), 1))


# --- Truth and metrics ----------------------------------------------------------------------------


class UnionFind:
    """Plain Python, path halving; keys are identifiers."""

    __slots__ = ("parent",)

    def __init__(self) -> None:
        self.parent: dict[Any, Any] = {}

    def find(self, x: Any) -> Any:
        parent = self.parent
        p = parent.setdefault(x, x)
        while p != x:
            gp = parent[p]
            parent[x] = gp
            x, p = p, gp
        return x

    def union(self, a: Any, b: Any) -> Any:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[rb] = ra
        return ra


def union_find_reference(ids: Sequence[tuple[IdKey, ...]]) -> tuple[list[Any], float]:
    """Every event's component when identifiers seen together are one person; (labels, seconds)."""
    start = time.perf_counter()
    uf = UnionFind()
    for keys in ids:
        if keys:
            first = keys[0]
            uf.find(first)
            for other in keys[1:]:
                uf.union(first, other)
    find = uf.find
    labels = [find(keys[0]) if keys else ("none", i) for i, keys in enumerate(ids)]
    return labels, time.perf_counter() - start


def linkable_components(truth: Sequence[int], ids: Sequence[tuple[IdKey, ...]]) -> list[Any]:
    """Each event's component of deterministic evidence: identifiers used by one person only
    link that person's events; an event with none is alone (None)."""
    users: dict[IdKey, set[int]] = defaultdict(set)
    for person, keys in zip(truth, ids, strict=True):
        for k in keys:
            users[k].add(person)
    exclusive = {k for k, who in users.items() if len(who) == 1}
    uf = UnionFind()
    own: list[list[IdKey]] = []
    for keys in ids:
        mine = [k for k in keys if k in exclusive]
        own.append(mine)
        for other in mine[1:]:
            uf.union(mine[0], other)
    return [uf.find(mine[0]) if mine else None for mine in own]


def _pairs(counter: Iterable[int]) -> int:
    return sum(n * (n - 1) // 2 for n in counter)


@dataclass(slots=True)
class Scores:
    precision: float
    recall: float
    profile_pairs: int
    correct_pairs: int
    linkable_pairs: int
    linked_pairs: int
    profiles: int


def score(profiles: Sequence[Any], truth: Sequence[int], components: Sequence[Any]) -> Scores:
    """Pairwise precision and recall from contingency counts. Events without a profile
    (None) are alone."""
    labels = [p if p is not None else ("alone", i) for i, p in enumerate(profiles)]
    by_profile = Counter(labels)
    profile_pairs = _pairs(by_profile.values())
    correct_pairs = _pairs(Counter(zip(labels, truth, strict=True)).values())
    comp = [(c, lab) for c, lab in zip(components, labels, strict=True) if c is not None]
    linkable_pairs = _pairs(Counter(c for c, _ in comp).values())
    linked_pairs = _pairs(Counter(comp).values())
    return Scores(
        precision=correct_pairs / profile_pairs if profile_pairs else 1.0,
        recall=linked_pairs / linkable_pairs if linkable_pairs else 1.0,
        profile_pairs=profile_pairs, correct_pairs=correct_pairs, linkable_pairs=linkable_pairs,
        linked_pairs=linked_pairs, profiles=len(by_profile),
    )  # fmt: skip


def _role(person: Person) -> str:
    order = ("claimant", "family_owner", "family_member", "bogus", "email_only", "email", "identified")
    roles = [r for r in order if r in person.roles]
    return "+".join(roles) if roles else "anonymous"


def explain_errors(
    profiles: Sequence[Any], work: Workload, components: Sequence[Any], *, examples: int, db: Any
) -> dict[str, Any]:
    """Which people were merged (precision) and which were split (recall), by kind of person,
    with a few concrete cases."""
    people = work.population.people
    truth, ids = work.truth, work.ids
    members: dict[Any, Counter[int]] = defaultdict(Counter)
    for i, p in enumerate(profiles):
        if p is not None:
            members[p][truth[i]] += 1
    merged_by_role: Counter[str] = Counter()
    merged_cases = []
    for p, counts in members.items():
        if len(counts) > 1:
            wrong = _pairs([sum(counts.values())]) - _pairs(counts.values())
            merged_cases.append((wrong, p, counts))
            for person in counts:
                merged_by_role[_role(people[person])] += 1
    merged_cases.sort(key=lambda c: (-c[0], str(c[1])))

    split: dict[Any, Counter[Any]] = defaultdict(Counter)
    for i, c in enumerate(components):
        if c is not None:
            split[c][profiles[i] if profiles[i] is not None else ("alone", i)] += 1
    split_by_role: Counter[str] = Counter()
    lost_by_role: Counter[str] = Counter()
    split_cases = []
    person_of_comp = {}
    for i, c in enumerate(components):
        if c is not None:
            person_of_comp.setdefault(c, truth[i])
    for c, counts in split.items():
        if len(counts) > 1:
            lost = _pairs([sum(counts.values())]) - _pairs(counts.values())
            role = _role(people[person_of_comp[c]])
            split_by_role[role] += 1
            lost_by_role[role] += lost
            split_cases.append((lost, c, counts))
    split_cases.sort(key=lambda c: (-c[0], str(c[1])))

    def person_desc(person: Person) -> dict[str, Any]:
        return {"person": person.index, "roles": _role(person), "user_id": person.user_id, "email": person.email,
                "devices": person.devices, "family_device": person.family_device}  # fmt: skip

    event_ix: dict[int, list[int]] = defaultdict(list)
    for i, person in enumerate(truth):
        event_ix[person].append(i)

    report: dict[str, Any] = {
        "merged_profiles": len(merged_cases),
        "merged_people_by_role": dict(merged_by_role.most_common()),
        "split_components": len(split_cases),
        "split_components_by_role": dict(split_by_role.most_common()),
        "lost_pairs_by_role": dict(lost_by_role.most_common()),
        "merged_examples": [],
        "split_examples": [],
    }
    for wrong, p, counts in merged_cases[:examples]:
        live = p if isinstance(p, int) else None
        who = [{**person_desc(people[x]), "events": n} for x, n in counts.most_common(6)]
        case: dict[str, Any] = {"profile": p, "wrong_pairs": wrong, "people": who}
        if live is not None and db is not None:
            rows = db.execute(
                "SELECT kind, value FROM profiles_identity WHERE profile_id = %s ORDER BY id LIMIT 20", [live]
            ).fetchall()
            case["identities"] = [f"{k}:{v}" for k, v in rows]
            case["merges"] = [
                {"loser": loser, "identifiers": idents, "event_id": eid}
                for loser, idents, eid in db.execute(
                    "SELECT loser_id, identifiers, event_id FROM profiles_merge WHERE winner_id = %s ORDER BY id "
                    "LIMIT 10", [live])
            ]  # fmt: skip
            db.commit()
        report["merged_examples"].append(case)
    for lost, c, _ in split_cases[:examples]:
        person = people[person_of_comp[c]]
        evs = [i for i in event_ix[person.index] if components[i] == c]
        parts: dict[Any, list[str]] = defaultdict(list)
        for i in evs:
            ev_desc = f"#{i} {work.population.events[i].type} " + ",".join(f"{k}:{v}" for k, v in ids[i])
            parts[str(profiles[i])].append(ev_desc)
        case = {"component": c, "lost_pairs": lost, **person_desc(person),
                "profiles": {k: v[:8] for k, v in parts.items()}}  # fmt: skip
        if db is not None:
            mids = [work.message_ids[i] for i in evs]
            if mids:
                case["demotions"] = [
                    f"event {eid} dropped {kind}:{value} ({rule})"
                    for eid, kind, value, rule in db.execute(
                        "SELECT event_id, kind, value, rule FROM profiles_demotion WHERE message_id = ANY(%s) "
                        "ORDER BY event_id LIMIT 10", [mids])
                ]  # fmt: skip
                db.commit()
        report["split_examples"].append(case)
    return report


# --- The run -------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Events/s resolved end to end (HTTP -> Celery -> profile) with pairwise precision and recall "
        "against a known truth, and the reference: an in-memory union-find over the same edges.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    pop = parser.add_argument_group("population")
    pop.add_argument("--people", type=int, default=None, help="people (default 100,000; 10,000 with --quick)")
    pop.add_argument("--quick", action="store_true", help=f"a fast check: {QUICK_PEOPLE:,} people")
    pop.add_argument("--shared-email-claims", type=int, default=None,
                     help="user ids claiming test@example.com (default 5,000 per 100,000 people)")  # fmt: skip
    pop.add_argument("--family-devices", type=int, default=None,
                     help="devices shared by 2-4 people (default 1 per 100 people)")  # fmt: skip
    pop.add_argument("--family-gap-events", type=int, default=20_000,
                     help="members log in on a family device at least this many events after its owner in the "
                     "stream (0: only days later in time, which in-flight reordering can invert)")  # fmt: skip
    pop.add_argument("--seed", type=int, default=7)
    pop.add_argument("--batch-size", type=int, default=100, help="messages per /v1/batch request")
    pop.add_argument("--shuffle-window", type=int, default=100, help="shuffle the time-ordered stream in windows")
    pop.add_argument("--examples", type=int, default=5, help="examples of merged and split people to print")
    load = parser.add_argument_group("load")
    load.add_argument("--concurrency", type=int, default=4, help="client threads, one keep-alive connection each")
    load.add_argument("--warmup-people", type=int, default=300, help="people posted (then deleted) before timing")
    load.add_argument("--max-seconds", type=float, default=1200, help="stop posting after this long")
    load.add_argument(
        "--computed-traits",
        action="store_true",
        help="make 11 computed traits live first (bench/live.py: every type, two windowed, a score)",
    )
    load.add_argument(
        "--audiences",
        type=int,
        default=0,
        metavar="N",
        help="make N real-time audiences live first (bench/live.py: the seed six and variations)",
    )
    load.add_argument(
        "--drain-timeout", type=float, default=900, help="after the load, wait this long for the pipeline"
    )
    server = parser.add_argument_group("server")
    server.add_argument("--gunicorn-workers", type=int, default=2)
    server.add_argument("--worker-class", default="gthread")
    server.add_argument("--threads", type=int, default=2, help="gunicorn --threads (gthread)")
    server.add_argument("--worker-pool", default="prefork", help="Celery --pool (prefork, solo)")
    server.add_argument("--worker-concurrency", type=int, default=2, help="Celery --concurrency")
    server.add_argument("--celery-workers", type=int, default=1, help="Celery worker processes to start (each with "
                        "its own --pool/--concurrency; e.g. 2 with --worker-pool solo)")  # fmt: skip
    server.add_argument("--worker-loglevel", default="INFO",
                        help="Celery --loglevel; INFO logs task retries, which the report counts")  # fmt: skip
    target = parser.add_argument_group("targets")
    target.add_argument(
        "--database-url",
        default=os.environ.get("BENCH_IDENTITY_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/cdp_bench_identity"),
        help="PostgreSQL database to DROP, re-create and migrate (env BENCH_IDENTITY_DATABASE_URL)",
    )
    target.add_argument("--allow-drop", action="store_true", help="allow a database name without 'bench'")
    target.add_argument(
        "--broker-url",
        default=os.environ.get("BENCH_IDENTITY_BROKER_URL", "redis://127.0.0.1:6379/14"),
        help="Redis for the Celery broker and cache; its queue is purged (env BENCH_IDENTITY_BROKER_URL)",
    )
    target.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    target.add_argument("--fail-under", type=float, default=0.0, help="also exit 1 below this many events/s")
    target.add_argument("--keep-logs", action="store_true", help="keep the gunicorn/Celery logs (path printed)")
    return parser


def truncate_profiles(db: psycopg.Connection[Any], *, live: bool = False) -> None:
    tables = PROFILE_TABLES + (LIVE_TABLES if live else ())
    db.execute(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE")
    db.commit()
    with contextlib.suppress(psycopg.Error):
        db.execute("CHECKPOINT")
        db.commit()
    db.rollback()


def feed_behind(db: psycopg.Connection[Any]) -> int:
    """Changes of the feed that some consumer has still to read."""
    return int(_scalar(db, "SELECT count(*) FROM profiles_profilechange c WHERE c.id > "
                           "(SELECT coalesce(min(position), 0) FROM profiles_feedconsumer)"))  # fmt: skip


def wait_feed(db: psycopg.Connection[Any], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if feed_behind(db) == 0:
            return True
        time.sleep(0.1)
    return False


def _scalar(db: psycopg.Connection[Any], sql: str, params: Sequence[Any] = ()) -> Any:
    row = db.execute(sql, params).fetchone()
    db.commit()
    return row[0] if row else None


def pending(db: psycopg.Connection[Any]) -> int:
    """Messages accepted and not yet in the event log."""
    return int(_scalar(db, "SELECT coalesce(sum(size), 0) FROM profiles_eventbatch"))


def any_pending(db: psycopg.Connection[Any]) -> bool:
    return bool(_scalar(db, "SELECT EXISTS (SELECT 1 FROM profiles_eventbatch)"))


def sample_waits(db: psycopg.Connection[Any], tally: Counter[str]) -> None:
    """What this database's busy backends are doing now: running (CPU), waiting (lock, I/O,
    WAL), or idle in a transaction (waiting for the app's Python)."""
    rows = db.execute(
        "SELECT state, wait_event_type, wait_event FROM pg_stat_activity WHERE datname = current_database() "
        "AND pid <> pg_backend_pid() AND state IN ('active', 'idle in transaction')"
    ).fetchall()
    for state, wtype, wevent in rows:
        if state == "idle in transaction":
            tally["idle in transaction (app's Python)"] += 1
        elif wtype is None:
            tally["running (CPU)"] += 1
        else:
            tally[f"{wtype}:{wevent}"] += 1
    tally["_samples"] += 1


def _proc_cpu(pid: int) -> float:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = raw[raw.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / _TICK


_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


class BackendCpu:
    """CPU used by this database's PostgreSQL backends (and the server's own processes),
    sampled during the run: the app recycles its connections (CONN_MAX_AGE), and a before
    and after snapshot misses every backend that exited in between."""

    _SQL = (
        "SELECT pid FROM pg_stat_activity WHERE pid <> pg_backend_pid() AND "
        "(datname = current_database() OR backend_type <> 'client backend')"
    )

    def __init__(self, db: psycopg.Connection[Any]) -> None:
        self.first: dict[int, float] = {}
        self.last: dict[int, float] = {}
        for (pid,) in db.execute(self._SQL).fetchall():
            self.first[pid] = self.last[pid] = _proc_cpu(pid)

    def sample(self, db: psycopg.Connection[Any]) -> None:
        for (pid,) in db.execute(self._SQL).fetchall():
            self.first.setdefault(pid, 0.0)  # born during the run
            self.last[pid] = max(self.last.get(pid, 0.0), _proc_cpu(pid))

    def total(self) -> float:
        return sum(self.last[pid] - self.first[pid] for pid in self.last)


def sample_advisory(db: psycopg.Connection[Any], tally: Counter[int]) -> None:
    """The advisory locks (one per identifier, taken by resolution) that backends wait for."""
    rows = db.execute(
        "SELECT l.classid::bigint, l.objid::bigint FROM pg_locks l JOIN pg_database d ON d.oid = l.database "
        "WHERE d.datname = current_database() AND l.locktype = 'advisory' AND NOT l.granted"
    ).fetchall()
    for hi, lo in rows:
        key = (hi << 32) | lo
        tally[key - (1 << 64) if key >= 1 << 63 else key] += 1


def advisory_waits_by_kind(tally: Counter[int], work: Workload) -> dict[str, int]:
    """Name the waited-for locks, assuming the app hashes identifiers as it does today
    (blake2b-64 of "kind\\0value"); anything else shows as unknown."""
    if not tally:
        return {}
    family = {p.family_device for p in work.population.people if p.family_device}
    names: dict[int, str] = {}
    for keys in work.ids:
        for kind, value in keys:
            digest = hashlib.blake2b(f"{kind}\x00{value}".encode(), digest_size=8).digest()
            h = int.from_bytes(digest, "big", signed=True)
            if h in tally and h not in names:
                if value == SHARED_EMAIL:
                    names[h] = f"email {SHARED_EMAIL} ({work.population.claimants:,} claimants)"
                elif kind == "anonymous_id" and value in family:
                    names[h] = "anonymous_id of a family device"
                else:
                    names[h] = f"{kind} of one person"
    by_kind: Counter[str] = Counter()
    for h, n in tally.items():
        by_kind[names.get(h, "unknown")] += n
    return dict(by_kind.most_common())


def server_settings(db: psycopg.Connection[Any]) -> dict[str, str]:
    names = ("autovacuum", "shared_buffers", "synchronous_commit", "max_connections")
    rows = db.execute("SELECT name, current_setting(name) FROM pg_settings WHERE name = ANY(%s)", [list(names)])
    settings = dict(rows.fetchall())
    db.commit()
    return settings


def poll_connection(url: str) -> psycopg.Connection[Any]:
    """A connection for polling (the batches waiting: a small table, read whole)."""
    return psycopg.connect(url, autocommit=True)


def wait_pending(db: psycopg.Connection[Any], expected: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not any_pending(db) and _scalar(db, "SELECT count(*) FROM profiles_event") >= expected:
            return True
        time.sleep(0.25)
    return False


def read_profiles(db: psycopg.Connection[Any], n: int) -> tuple[list[int | None], dict[str, int]]:
    """Each event's live profile: one query joining events to profiles; tombstone chains (a
    tombstone pointing at another tombstone) are counted and followed."""
    profiles: list[int | None] = [None] * n
    direct_tombstone = 0
    with db.cursor() as cursor:
        cursor.execute(
            "SELECT e.message_id, COALESCE(p.merged_into_id, p.id), p.merged_into_id IS NOT NULL "
            "FROM profiles_event e LEFT JOIN profiles_profile p ON p.id = e.profile_id"
        )
        for mid, live, on_tombstone in cursor:
            profiles[index_of(mid)] = live
            direct_tombstone += bool(on_tombstone)
    forward = dict(db.execute("SELECT id, merged_into_id FROM profiles_profile WHERE merged_into_id IS NOT NULL"))
    db.commit()
    chained = 0
    if any(w in forward for w in forward.values()):
        for i, p in enumerate(profiles):
            hops = 0
            while p in forward and hops < 1000:
                p, hops = forward[p], hops + 1
            if hops:
                chained += 1
                profiles[i] = p
    stats = {"events_on_tombstones": direct_tombstone, "tombstones": len(forward),
             "tombstones_pointing_at_tombstones": sum(1 for w in forward.values() if w in forward),
             "events_behind_chains": chained}  # fmt: skip
    return profiles, stats


def _fmt(n: float) -> str:
    return f"{n:,.0f}"


def run(args: argparse.Namespace) -> int:
    people = args.people if args.people is not None else (QUICK_PEOPLE if args.quick else 100_000)
    claims = args.shared_email_claims if args.shared_email_claims is not None else round(5000 * people / 100_000)
    families = args.family_devices if args.family_devices is not None else max(1, people // 100)
    var_dir = Path(tempfile.mkdtemp(prefix="cdp-bench-identity-"))
    env = app_env(args, var_dir)
    services: list[Service] = []
    stop = threading.Event()
    try:
        t0 = time.perf_counter()
        pop = PopulationBuilder(
            seed=args.seed, people=people, claimants=claims, families=families, family_gap=args.family_gap_events
        ).build()
        work = build_workload(pop, batch_size=args.batch_size, shuffle_window=args.shuffle_window, seed=args.seed)
        total = len(work.truth)
        warm_pop = PopulationBuilder(seed=args.seed + 1000, people=args.warmup_people, claimants=5,
                                     families=2, prefix="warm_").build()  # fmt: skip
        warm = build_workload(warm_pop, batch_size=args.batch_size, shuffle_window=0, seed=args.seed + 1000)
        kinds = Counter(e.type for e in pop.events)
        say(f"generated {people:,} people, {total:,} events in {len(work.bodies):,} bodies "
            f"({sum(map(len, work.bodies)) / 1e6:,.1f} MB, {work.message_bytes:,.0f} B/message) "
            f"in {time.perf_counter() - t0:.1f} s")  # fmt: skip

        say(f"re-creating database {urlsplit(args.database_url).path.lstrip('/')} and migrating")
        recreate_database(args.database_url, args.allow_drop)
        _manage(env, "migrate", "--noinput")
        write_key = _manage(env, "create_source", "identity-bench").strip().splitlines()[-1].strip()
        live = {(False, False): "", (True, False): "identity_traits", (False, True): "identity_audiences",
                (True, True): "identity_both"}[(args.computed_traits, args.audiences > 0)]  # fmt: skip
        if live:
            _manage(env, "shell", "-c", f"from bench.live import create; create({live!r}, {args.audiences})")
            say(f"live: {live.replace('identity_', '')} ({args.audiences} audiences)" if args.audiences
                else "live: 11 computed traits")  # fmt: skip
        auth = "Basic " + base64.b64encode(f"{write_key}:".encode()).decode()
        db = psycopg.connect(args.database_url)
        pg_settings = server_settings(db)

        _celery_purge(env)
        port = _free_port()
        gunicorn_argv = [
            PYTHON, "-m", "gunicorn", "cdp.wsgi", "--bind", f"127.0.0.1:{port}",
            "--workers", str(args.gunicorn_workers), "--worker-class", args.worker_class,
            "--log-level", "warning", "--timeout", "120", "--graceful-timeout", "10", "--backlog", "2048",
        ]  # fmt: skip
        if args.worker_class == "gthread":
            gunicorn_argv += ["--threads", str(args.threads)]
        gunicorn = Service("gunicorn", gunicorn_argv, env, var_dir / "gunicorn.log")
        services.append(gunicorn)
        workers = []
        for n in range(args.celery_workers):
            worker = Service(
                f"celery-{n}",
                [PYTHON, "-m", "celery", "-A", "cdp", "worker", "--pool", args.worker_pool,
                 "--concurrency", str(args.worker_concurrency), "--loglevel", args.worker_loglevel, "--hostname",
                 f"identity-bench-{n}@%h", "--without-gossip", "--without-mingle", "--without-heartbeat"],
                env, var_dir / f"celery-{n}.log",
            )  # fmt: skip
            services.append(worker)
            workers.append(worker)
        _wait_healthy(port, gunicorn)
        server_desc = f"gunicorn {args.gunicorn_workers} x {args.worker_class}" + (
            f" x {args.threads} threads" if args.worker_class == "gthread" else ""
        )
        worker_desc = (
            f"{args.celery_workers} x celery worker --pool {args.worker_pool} --concurrency {args.worker_concurrency}"
        )
        say(f"{server_desc} on 127.0.0.1:{port}; {worker_desc}; warming up with {len(warm.truth):,} events")
        warm_load = post_all(port=port, auth=auth, bodies=warm.bodies, counts=warm.counts,
                             concurrency=args.concurrency, max_seconds=120, stop=stop)  # fmt: skip
        if warm_load.failures:
            raise SetupError("warm-up failed:\n  " + "\n  ".join(warm_load.failures[:5]) + "\n" + gunicorn.tail())
        if not wait_pending(db, len(warm.truth), timeout=180):
            raise SetupError("the Celery worker did not process the warm-up:\n" + workers[0].tail())
        if live and not wait_feed(db, timeout=180):
            raise SetupError("the change feed's consumers did not catch up with the warm-up:\n" + workers[0].tail())
        truncate_profiles(db, live=bool(live))

        say(f"posting {total:,} events in {len(work.bodies):,} requests from {args.concurrency} threads; "
            "polling until every event is resolved")  # fmt: skip
        meter = CpuMeter(db, {"gunicorn": gunicorn, **{w.name: w for w in workers}})
        backend_cpu = BackendCpu(db)
        db.commit()
        advisory: Counter[int] = Counter()
        holder: dict[str, Any] = {}

        def load() -> None:
            holder["load"] = post_all(
                port=port, auth=auth, bodies=work.bodies, counts=work.counts, concurrency=args.concurrency,
                max_seconds=args.max_seconds, stop=stop,
            )  # fmt: skip

        poll = poll_connection(args.database_url)
        start = time.perf_counter()
        loader = threading.Thread(target=load, name="load", daemon=True)
        loader.start()
        # Cheap EXISTS polls (0.5 s, then 0.1 s near the end); a count every 20 s for the log.
        backlog: list[tuple[float, int]] = []
        waits: Counter[str] = Counter()
        end_to_end: float | None = None
        load_done_at: float | None = None
        left_at_load_end = 0
        deadline: float | None = None
        next_count = start + 20
        left = total
        while True:
            now = time.perf_counter()
            if now >= next_count:
                left = pending(poll)
                backlog.append((now - start, left))
                next_count = now + 20
                say(f"{now - start:6.1f} s: {left:,} accepted events to resolve")
            if load_done_at is None and not loader.is_alive():
                load_done_at = now
                deadline = now + args.drain_timeout
                left = left_at_load_end = pending(poll)
                backlog.append((now - start, left))
                say(f"load done in {now - start:.1f} s; {left:,} events still to resolve")
            if load_done_at is not None:
                if not any_pending(poll):
                    end_to_end = time.perf_counter() - start
                    break
                if deadline is not None and now > deadline:
                    break
                if any(not w.alive() for w in workers):
                    raise SetupError("a Celery worker died:\n" + next(w for w in workers if not w.alive()).tail())
            near_end = load_done_at is not None and left < 20_000
            if not near_end:
                sample_waits(poll, waits)
                sample_advisory(poll, advisory)
                backend_cpu.sample(poll)
            time.sleep(0.1 if near_end else 0.5)
        # The layers above (computed traits, audiences) read the change feed after resolution:
        # the whole way ends when every consumer has caught up too.
        caught_up: float | None = None
        if end_to_end is not None and wait_feed(poll, timeout=args.drain_timeout):
            caught_up = time.perf_counter() - start
        backend_cpu.sample(poll)
        cpu = meter.stop()
        pg_cpu = backend_cpu.total()
        # Backends that exited during the run fell into "other"; count them as PostgreSQL.
        cpu["other"] = max(0.0, cpu.get("other", 0.0) + cpu.get("postgres", 0.0) - pg_cpu)
        cpu["postgres"] = pg_cpu
        poll.close()
        drain_seconds = end_to_end - (load_done_at - start) if end_to_end and load_done_at else None
        load_result = holder.get("load")
        if load_result is None:
            raise SetupError("the load thread failed")
        stored = int(_scalar(db, "SELECT count(*) FROM profiles_event"))
        unresolved = int(_scalar(db, "SELECT count(*) FROM profiles_event WHERE profile_id IS NULL"))
        lag = db.execute(
            "SELECT percentile_cont(ARRAY[0.5, 0.99]) WITHIN GROUP (ORDER BY extract(epoch FROM processed_at - "
            "received_at)), max(extract(epoch FROM processed_at - received_at)) FROM profiles_event"
        ).fetchone()
        db.commit()
        for service in reversed(services):
            service.stop()
        log_errors = _log_errors(workers)

        say("reading every event's live profile")
        profiles, chain_stats = read_profiles(db, total)
        graph = {
            "profiles_live": _scalar(db, "SELECT count(*) FROM profiles_profile WHERE merged_into_id IS NULL"),
            "identities": _scalar(db, "SELECT count(*) FROM profiles_identity"),
            "merges": _scalar(db, "SELECT count(*) FROM profiles_merge"),
            "demotions": _scalar(db, "SELECT count(*) FROM profiles_demotion"),
            "demotions_by_rule": dict(
                db.execute("SELECT rule, count(*) FROM profiles_demotion GROUP BY rule ORDER BY 2 DESC").fetchall()
            ),
        }
        db.commit()

        say("reference: union-find over the same edges")
        uf_labels, uf_seconds = union_find_reference(work.ids)
        components = linkable_components(work.truth, work.ids)
        ours = score(profiles, work.truth, components)
        ref = score(uf_labels, work.truth, components)
        errors = None
        if ours.precision < 1.0 or ours.recall < 1.0:
            errors = explain_errors(profiles, work, components, examples=args.examples, db=db)
        uf_errors = explain_errors(uf_labels, work, components, examples=0, db=None)
        db.close()

        e2e_eps = total / end_to_end if end_to_end else 0.0
        uf_eps = total / uf_seconds if uf_seconds else 0.0
        lat = sorted(load_result.latencies)
        report = {
            "people": people, "events": total, "kinds": dict(kinds), "message_bytes": round(work.message_bytes),
            "family_devices": pop.family_devices, "shared_email_claims": pop.claimants,
            "people_by_role": dict(Counter(_role(p) for p in pop.people).most_common()),
            "server": server_desc, "celery": worker_desc, "concurrency": args.concurrency,
            "http_seconds": round(load_result.seconds, 2),
            "http_events_per_s": round(load_result.events_acked / load_result.seconds) if load_result.seconds else 0,
            "latency_p50_ms": round(percentile(lat, 50) * 1000, 1),
            "latency_p99_ms": round(percentile(lat, 99) * 1000, 1),
            "latency_max_ms": round(lat[-1] * 1000, 1) if lat else None,
            "requests_over_1s": sum(1 for x in lat if x > 1.0),
            "end_to_end_seconds": round(end_to_end, 2) if end_to_end else None,
            "end_to_end_events_per_s": round(e2e_eps),
            "feed_caught_up_seconds": _r(caught_up),
            "with_consumers_events_per_s": round(total / caught_up) if caught_up else None,
            "live": live or None,
            "drain_seconds": _r(drain_seconds), "drained_events": left_at_load_end,
            "drain_events_per_s": round(left_at_load_end / drain_seconds) if drain_seconds else None,
            "union_find_seconds": round(uf_seconds, 3), "union_find_events_per_s": round(uf_eps),
            "ratio": round(e2e_eps / uf_eps, 5) if uf_eps else None,
            "events_acked": load_result.events_acked, "events_stored": stored, "events_unresolved": unresolved,
            "events_pending_at_end": backlog[-1][1] if backlog else None,
            "resolution_lag_s": {"p50": _r(lag[0][0] if lag and lag[0] else None),
                                 "p99": _r(lag[0][1] if lag and lag[0] else None), "max": _r(lag[1] if lag else None)},
            "max_backlog": max((b for _, b in backlog), default=0),
            "postgres_waits": _wait_shares(waits), "postgres_settings": pg_settings,
            "advisory_lock_waits": advisory_waits_by_kind(advisory, work),
            "cpu_seconds": {k: round(v, 2) for k, v in cpu.items()},
            "ours": _scores(ours), "union_find": _scores(ref), "tombstones": chain_stats, "graph": graph,
            "worker_log_errors": log_errors, "errors": errors,
            "union_find_errors": {k: v for k, v in uf_errors.items() if not k.endswith("examples")},
            "failures": load_result.failures[:20], "stopped_early": load_result.stopped_early,
        }  # fmt: skip
        print_report(report)
        if args.json:
            args.json.write_text(json.dumps(report, indent=2, default=str) + "\n")
        complete = not load_result.failures and load_result.events_acked == total == stored and end_to_end is not None
        good = ours.precision == 1.0 and ours.recall >= 0.99
        return 0 if complete and good and e2e_eps >= args.fail_under else 1
    except KeyboardInterrupt:
        stop.set()
        say("interrupted; stopping what was started")
        return 130
    finally:
        stop.set()
        tear_down(services, env, var_dir, keep_logs=args.keep_logs)


def _wait_shares(waits: Counter[str]) -> dict[str, str]:
    """Average number of backends in each state per sample, the busiest first."""
    samples = waits.pop("_samples", 0)
    if not samples:
        return {}
    return {k: f"{v / samples:.2f}" for k, v in waits.most_common(8)}


def _r(x: Any) -> float | None:
    return None if x is None else round(float(x), 2)


def _scores(s: Scores) -> dict[str, Any]:
    return {"precision": round(s.precision, 6), "recall": round(s.recall, 6), "profiles": s.profiles,
            "pairs_in_profiles": s.profile_pairs, "pairs_same_person": s.correct_pairs,
            "linkable_pairs": s.linkable_pairs, "linkable_pairs_joined": s.linked_pairs}  # fmt: skip


_RETRY_RE = re.compile(r"retry: Retry in [^:]*: (\w+)")


def _log_errors(workers: Sequence[Service]) -> dict[str, Any]:
    """Task retries (logged at INFO: the task raised a DatabaseError, rolled back, and runs
    again later, out of order) and errors in the Celery logs."""
    lines: list[str] = []
    retries: Counter[str] = Counter()
    for w in workers:
        with contextlib.suppress(OSError):
            for ln in w.log.read_text(errors="replace").splitlines():
                if (m := _RETRY_RE.search(ln)) is not None:
                    retries[m.group(1)] += 1
                    lines.append(ln)
                elif "ERROR" in ln or "Traceback" in ln or "CRITICAL" in ln:
                    lines.append(ln)
    return {"lines": len(lines), "retries": dict(retries), "first": lines[:5]}


def print_report(r: dict[str, Any]) -> None:
    out = sys.stdout
    w = out.write
    w("\n")
    kinds = ", ".join(f"{k} {v:,}" for k, v in r["kinds"].items())
    w(f"population  {r['people']:,} people -> {r['events']:,} events ({kinds}), ~{r['message_bytes']} B each\n")
    w(
        f"            {r['family_devices']:,} family devices (2-4 people each), {r['shared_email_claims']:,} user ids "
        f"claiming {SHARED_EMAIL}, bogus ids {', '.join(BOGUS_USER_IDS)} and {BOGUS_ANONYMOUS_ID}\n"
    )
    w("            roles: " + ", ".join(f"{k} {v:,}" for k, v in r["people_by_role"].items()) + "\n")
    w(f"server      {r['server']}; {r['celery']}; {r['concurrency']} client threads\n")
    pg = r["postgres_settings"]
    w(f"machine     {os.cpu_count()} CPUs, Python {platform.python_version()}; PostgreSQL "
      + ", ".join(f"{k}={v}" for k, v in pg.items()) + "\n")  # fmt: skip
    if pg.get("autovacuum") == "off":
        w("  WARNING: autovacuum is off on this server: tables are never analyzed nor vacuumed during the run\n")
    w("\n")
    o, u = r["ours"], r["union_find"]
    rows = [
        ("", "events/s", "seconds", "precision", "recall", "profiles"),
        ("HTTP -> pipeline -> profile (end to end)", _fmt(r["end_to_end_events_per_s"]),
         f"{r['end_to_end_seconds']:.2f}" if r["end_to_end_seconds"] else "n/a",
         f"{o['precision']:.6f}", f"{o['recall']:.6f}", _fmt(o["profiles"])),
        ("... and the change feed's consumers caught up", _fmt(r["with_consumers_events_per_s"] or 0),
         f"{r['feed_caught_up_seconds']:.2f}" if r["feed_caught_up_seconds"] else "n/a", "", "", ""),
        ("union-find in memory (reference)", _fmt(r["union_find_events_per_s"]), f"{r['union_find_seconds']:.3f}",
         f"{u['precision']:.6f}", f"{u['recall']:.6f}", _fmt(u["profiles"])),
        ("ratio ours / union-find", f"{r['ratio']:.5f}" if r["ratio"] is not None else "n/a", "", "", "", ""),
    ]  # fmt: skip
    widths = [max(len(row[i]) for row in rows) for i in range(6)]
    for row in rows:
        w("  ".join(c.ljust(widths[0]) if i == 0 else c.rjust(widths[i]) for i, c in enumerate(row)) + "\n")
    w("\n")
    if r["drain_events_per_s"]:
        w(f"pipeline alone, after the load: {_fmt(r['drain_events_per_s'])} events/s resolved "
          f"({r['drained_events']:,} events in {r['drain_seconds']} s, no HTTP beside it)\n")  # fmt: skip
    w(
        f"HTTP alone: {_fmt(r['http_events_per_s'])} events/s accepted ({r['http_seconds']:.2f} s, p50 "
        f"{r['latency_p50_ms']} ms, p99 {r['latency_p99_ms']} ms, max {r['latency_max_ms']} ms, "
        f"{r['requests_over_1s']} over 1 s); largest backlog {r['max_backlog']:,} events; "
        f"lag accepted -> in the log p50 {r['resolution_lag_s']['p50']} s, p99 {r['resolution_lag_s']['p99']} s\n"
    )
    cpu = r["cpu_seconds"]
    ours_cpu = {k: v for k, v in cpu.items() if k not in ("other", "steal")}
    total_cpu = sum(ours_cpu.values())
    if r["events"] and total_cpu:
        per_k = ", ".join(f"{k} {v * 1e6 / r['events']:.1f}" for k, v in ours_cpu.items() if v > 0.005)
        w(f"CPU ms per 1,000 events: {per_k}; total {total_cpu * 1e6 / r['events']:.1f} "
          f"(at that cost {os.cpu_count()} CPUs cap it at ~{_fmt((os.cpu_count() or 1) * r['events'] / total_cpu)} "
          f"events/s)\n")  # fmt: skip
        seconds = r["end_to_end_seconds"] or 0
        noise = cpu.get("other", 0.0) + cpu.get("steal", 0.0)
        if seconds and noise > 0.1 * (os.cpu_count() or 1) * seconds:
            w(
                f"  WARNING: other work on this machine used {noise:.1f} CPU-seconds during the run: figures are low "
                "and noisy\n"
            )
    w(
        f"pairs: ours {o['pairs_same_person']:,} of {o['pairs_in_profiles']:,} same-profile pairs are one person; "
        f"{o['linkable_pairs_joined']:,} of {o['linkable_pairs']:,} linkable pairs joined\n"
    )
    w(
        f"       union-find {u['pairs_same_person']:,} of {u['pairs_in_profiles']:,}; "
        f"{u['linkable_pairs_joined']:,} of {u['linkable_pairs']:,}\n"
    )
    ue = r["union_find_errors"]
    w(
        f"union-find merges: {ue['merged_profiles']:,} components hold several people "
        f"({', '.join(f'{k} {v:,}' for k, v in ue['merged_people_by_role'].items())})\n"
    )
    g, t = r["graph"], r["tombstones"]
    w(
        f"graph: {g['profiles_live']:,} live profiles, {g['identities']:,} identities, {g['merges']:,} merges, "
        f"{t['tombstones']:,} tombstones ({t['tombstones_pointing_at_tombstones']} chained, "
        f"{t['events_on_tombstones']} events on tombstones), {g['demotions']:,} demotions: "
        + ", ".join(f"{k} {v:,}" for k, v in g["demotions_by_rule"].items())
        + "\n"
    )
    w(
        f"events: sent {r['events']:,}, answered 200 for {r['events_acked']:,}, stored {r['events_stored']:,}, "
        f"without a profile {r['events_unresolved']:,}\n"
    )
    if r["postgres_waits"]:
        w("PostgreSQL backends of this database, sampled every 0.5 s while busy: "
          + ", ".join(f"{k} {v}" for k, v in r["postgres_waits"].items()) + "\n")  # fmt: skip
    if r["advisory_lock_waits"]:
        w("  waiting for advisory locks on (samples): "
          + ", ".join(f"{k} {v:,}" for k, v in r["advisory_lock_waits"].items()) + "\n")  # fmt: skip
    if r["worker_log_errors"]["lines"]:
        w(
            f"worker log: {r['worker_log_errors']['lines']} retries or errors (retries by exception: "
            f"{r['worker_log_errors']['retries']}), e.g.\n"
        )
        for line in r["worker_log_errors"]["first"]:
            w(f"  {line[:300]}\n")
    if r["stopped_early"]:
        w(f"stopped early: {r['stopped_early']}\n")
    for failure in r["failures"][:5]:
        w(f"  failure: {failure}\n")
    e = r["errors"]
    if e:
        w(
            f"\nours: {e['merged_profiles']:,} profiles hold several people (people by role: "
            f"{e['merged_people_by_role']}); {e['split_components']:,} linkable components split across profiles "
            f"(by role: {e['split_components_by_role']}; pairs lost: {e['lost_pairs_by_role']})\n"
        )
        for case in e["merged_examples"]:
            w(f"  MERGED {json.dumps(case, default=str)}\n")
        for case in e["split_examples"]:
            w(f"  SPLIT {json.dumps(case, default=str)}\n")
    eps = r["end_to_end_events_per_s"]
    w(
        f"\nbar 5,000 events/s end to end: {'met' if eps >= 5000 else 'NOT met'}; goal 10,000: "
        f"{'met' if eps >= 10000 else 'NOT met'}; precision 1.0: {'met' if o['precision'] == 1.0 else 'NOT met'}; "
        f"recall >= 0.99: {'met' if o['recall'] >= 0.99 else 'NOT met'}\n"
    )
    out.flush()


def main(argv: Sequence[str] | None = None) -> int:
    return bench_main(run, build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
