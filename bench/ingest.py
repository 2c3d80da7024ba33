#!/usr/bin/env python3
"""Ingest benchmark: stored events/s through `POST /v1/batch`, against psycopg COPY.

    .venv/bin/python bench/ingest.py                     # defaults: 200,000 events
    .venv/bin/python bench/ingest.py --events 50000 --with-worker

What one run does, in order:

1. Drops and re-creates a dedicated PostgreSQL database (`cdp_bench` by default; the
   script refuses to drop a database whose name does not contain "bench" unless
   `--allow-drop` is given), migrates it and creates a source with `manage.py`.
2. Generates every message before anything is timed: about 1 KB each, 85% track, 10% page,
   5% identify, from users drawn with a Zipf law; serialises them into `/v1/batch` bodies
   of `--batch-size` messages and keeps, for the reference, the row each message becomes.
3. Starts gunicorn (and with `--with-worker` a Celery worker), waits for /healthz, warms up
   every worker, empties the table, then posts the bodies from `--concurrency` threads over
   keep-alive `http.client` connections (gunicorn's sync workers close them; gthread keeps
   them). A request counts when it answers 200 `{"success":true}`, which the app sends
   after the commit: the edge keeps each request's messages as one batch, which the
   pipeline (with `--with-worker`) writes to the event log. Stored events/s = events
   counted in the log and in the batches waiting for it / the time from the first
   request to the last answer; the count must equal the events sent.
4. Stops the servers, empties the table, and times the reference: the same rows (same
   column values, JSON already serialised) through `cursor.copy("COPY profiles_event ...")`
   and `write_row`, in one transaction, committed.
5. Prints both rates, their ratio, request latency p50/p99 and where the CPU went
   (gunicorn, Celery, PostgreSQL, this load generator), and stops everything it started,
   also on Ctrl-C or an error.

The bar on a 2-core machine is 10,000 stored events/s through HTTP; the goal is 20,000
at a ratio of at least 0.10 of COPY. Exit status: 0 when every event was stored exactly
once (and the rate is at least `--fail-under`, if given), 1 otherwise, 2 on a setup error.
Only the standard library and packages the app already needs (psycopg, orjson) are used.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import ctypes
import http.client
import itertools
import json
import os
import platform
import random
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent

try:
    import orjson
    import psycopg
except ImportError:  # run with a Python outside the project's virtualenv: re-run inside it
    _VENV_PYTHON = ROOT / ".venv" / "bin" / "python"
    if _VENV_PYTHON.exists() and Path(sys.prefix).resolve() != (ROOT / ".venv").resolve():
        os.execv(str(_VENV_PYTHON), [str(_VENV_PYTHON), str(Path(__file__).resolve()), *sys.argv[1:]])
    raise
PYTHON = sys.executable
TABLE = "profiles_event"
BATCHES = "profiles_eventbatch"
COLUMNS = (
    "source_id", "message_id", "type", "event", "name", "user_id", "anonymous_id", "group_id",
    "previous_id", "timestamp", "original_timestamp", "sent_at", "received_at",
    "properties", "traits", "context", "integrations", "extra",
)  # fmt: skip
OK_BODY = b'{"success":true}'


def say(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


class SetupError(Exception):
    """Something the benchmark needs did not work; the run is meaningless."""


# --- Messages ---------------------------------------------------------------------------------

_TRACK_EVENTS = (
    ("Product Viewed", 34), ("Product List Viewed", 14), ("Products Searched", 10), ("Product Clicked", 10),
    ("Product Added", 9), ("Cart Viewed", 6), ("Checkout Started", 4), ("Checkout Step Completed", 4),
    ("Payment Info Entered", 3), ("Order Completed", 3), ("Product Removed", 2), ("Coupon Applied", 1),
)  # fmt: skip
_PAGES = (
    ("Home", "/"), ("Category", "/c/shoes"), ("Category", "/c/jackets"), ("Category", "/c/bags"),
    ("Product", "/p/"), ("Search", "/search"), ("Cart", "/cart"), ("Checkout", "/checkout"),
    ("Blog", "/blog/how-to-choose-running-shoes"), ("Account", "/account/orders"),
)  # fmt: skip
_CATEGORIES = ("Shoes", "Jackets", "Bags", "Shirts", "Trousers", "Accessories", "Socks", "Hats")
_BRANDS = ("Northwind", "Contoso", "Fabrikam", "Tailspin", "Wingtip", "Adventure Works", "Litware")
_USER_AGENTS = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.4 Safari/605.1.15",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.4 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0.0.0 Mobile Safari/537.36",
)
_LOCALES = ("en-US", "en-GB", "fr-FR", "de-DE", "es-ES", "nl-NL", "it-IT")
_TIMEZONES = ("America/New_York", "Europe/London", "Europe/Paris", "Europe/Berlin", "America/Los_Angeles")
_REFERRERS = ("", "https://www.google.com/", "https://duckduckgo.com/", "https://news.ycombinator.com/",
              "https://t.co/x7Kd9Qm2", "https://www.facebook.com/")  # fmt: skip
_CAMPAIGNS = (
    {"name": "spring_sale", "source": "newsletter", "medium": "email", "content": "hero_banner"},
    {"name": "brand_search", "source": "google", "medium": "cpc", "term": "running shoes"},
    {"name": "retargeting_q2", "source": "facebook", "medium": "social", "content": "carousel_3"},
)
_FIRST = ("Ada", "Grace", "Alan", "Edsger", "Barbara", "Donald", "Frances", "Ken", "Margaret", "Linus")
_LAST = ("Lovelace", "Hopper", "Turing", "Dijkstra", "Liskov", "Knuth", "Allen", "Thompson", "Hamilton")
_PLANS = ("free", "free", "free", "pro", "pro", "business")
_HOST = "https://shop.example.com"


@dataclass(slots=True)
class User:
    anonymous_id: str
    user_id: str | None
    traits: dict[str, Any]
    user_agent: str
    locale: str
    timezone: str
    ip: str


@dataclass(slots=True)
class Workload:
    """Everything the run sends and the reference copies, generated before timing."""

    bodies: list[bytes]  # one /v1/batch body each
    counts: list[int]  # events in each body
    rows: list[tuple[Any, ...]]  # what each event becomes in profiles_event, in body order
    warmup: list[bytes]  # bodies of other events, sent (and then truncated) before timing
    message_bytes: float  # mean size of one message, serialised
    sent_at: datetime
    mix: dict[str, int]
    distinct_users: int


class Generator:
    """Segment messages as analytics.js sends them, from `users` people drawn with a Zipf
    law of exponent `zipf_s` (a few users send most events)."""

    def __init__(self, *, seed: int, users: int, zipf_s: float) -> None:
        self.rng = random.Random(seed)
        self.seed = seed
        self.cum_weights = list(itertools.accumulate(1.0 / (k**zipf_s) for k in range(1, users + 1)))
        self.population = range(users)
        self.users: dict[int, User] = {}
        self.products = [self._product(i) for i in range(2000)]
        self._event_names = [n for n, _ in _TRACK_EVENTS]
        self._event_cum = list(itertools.accumulate(w for _, w in _TRACK_EVENTS))

    def _uuid(self, rng: random.Random) -> str:
        return str(uuid.UUID(int=rng.getrandbits(128), version=4))

    def _product(self, i: int) -> dict[str, Any]:
        rng = self.rng
        category = rng.choice(_CATEGORIES)
        brand = rng.choice(_BRANDS)
        return {
            "product_id": f"{500000 + i}", "sku": f"{category[:3].upper()}-{i:05d}-{rng.randint(10, 99)}",
            "category": category, "name": f"{brand} {category[:-1] if category.endswith('s') else category} {i}",
            "brand": brand, "variant": rng.choice(("Black", "White", "Navy", "Olive", "Red")),
            "price": round(rng.uniform(9, 240), 2),
            "url": f"{_HOST}/p/{500000 + i}", "image_url": f"https://cdn.example.com/img/{500000 + i}.jpg",
        }  # fmt: skip

    def _user(self, index: int) -> User:
        user = self.users.get(index)
        if user is None:
            rng = random.Random(self.seed * 1_000_003 + index)
            known = rng.random() < 0.6
            first, last = rng.choice(_FIRST), rng.choice(_LAST)
            traits = {
                "email": f"{first.lower()}.{last.lower()}{index}@example.com", "firstName": first, "lastName": last,
                "name": f"{first} {last}", "plan": rng.choice(_PLANS), "logins": rng.randint(1, 400),
                "createdAt": f"20{rng.randint(18, 24)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}T10:00:00Z",
                "company": {"name": f"{rng.choice(_BRANDS)} Ltd", "industry": "Retail",
                            "employee_count": rng.choice((5, 20, 120, 800))},
                "address": {"city": rng.choice(("Paris", "London", "Berlin", "Austin")), "country": "FR"},
            }  # fmt: skip
            user = self.users[index] = User(
                anonymous_id=self._uuid(rng), user_id=f"usr_{index:07d}" if known else None, traits=traits,
                user_agent=rng.choice(_USER_AGENTS), locale=rng.choice(_LOCALES), timezone=rng.choice(_TIMEZONES),
                ip=f"{rng.randint(11, 223)}.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}",
            )  # fmt: skip
        return user

    def _context(self, user: User, title: str, path: str) -> dict[str, Any]:
        rng = self.rng
        search = "?q=trail+running" if path == "/search" else ""
        context: dict[str, Any] = {
            "library": {"name": "analytics.js", "version": "next-1.70.0"},
            "ip": user.ip,
            "locale": user.locale,
            "timezone": user.timezone,
            "userAgent": user.user_agent,
            "page": {"path": path, "referrer": rng.choice(_REFERRERS), "search": search, "title": f"{title} | Shop",
                     "url": f"{_HOST}{path}{search}"},
        }  # fmt: skip
        if rng.random() < 0.3:
            context["campaign"] = rng.choice(_CAMPAIGNS)
        return context

    def message(self, kind: str, user_index: int, at: datetime) -> dict[str, Any]:
        rng = self.rng
        user = self._user(user_index)
        message: dict[str, Any] = {"type": kind, "messageId": self._uuid(rng), "anonymousId": user.anonymous_id}
        if user.user_id or kind == "identify":
            message["userId"] = user.user_id or f"usr_{user_index:07d}"
        title, path = rng.choice(_PAGES)
        product = rng.choice(self.products)
        if path == "/p/":
            path = f"/p/{product['product_id']}"
        if kind == "track":
            event = self._event_name()
            quantity = rng.randint(1, 3)
            properties = {
                **product, "quantity": quantity, "currency": "EUR", "value": round(product["price"] * quantity, 2),
                "position": rng.randint(1, 48), "list_id": f"{product['category'].lower()}-grid",
                "coupon": rng.choice(("", "", "", "SPRING10")),
            }  # fmt: skip
            if event == "Order Completed":
                properties["order_id"] = f"ord_{rng.getrandbits(40):x}"
            message["event"] = event
            message["properties"] = properties
        elif kind == "page":
            message["name"] = title
            message["properties"] = {
                "title": f"{title} | Shop", "path": path, "url": f"{_HOST}{path}",
                "referrer": rng.choice(_REFERRERS), "search": "", "category": title, "name": title,
            }  # fmt: skip
        else:
            message["traits"] = user.traits
        message["context"] = self._context(user, title, path)
        message["integrations"] = {}
        message["timestamp"] = _iso(at)
        return message

    def _event_name(self) -> str:
        return self.rng.choices(self._event_names, cum_weights=self._event_cum)[0]

    def kinds(self, n: int) -> list[str]:
        """Exactly 85% track, 10% page, 5% identify (to the nearest event), shuffled."""
        pages, identifies = round(n * 0.10), round(n * 0.05)
        kinds = ["page"] * pages + ["identify"] * identifies + ["track"] * (n - pages - identifies)
        self.rng.shuffle(kinds)
        return kinds

    def user_indexes(self, n: int) -> list[int]:
        return self.rng.choices(self.population, cum_weights=self.cum_weights, k=n)


def _iso(at: datetime) -> str:
    return at.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def stored_row(message: dict[str, Any], *, source_id: int, sent_at: datetime, original: datetime) -> tuple[Any, ...]:
    """The profiles_event row the app stores for `message` (sent in a batch whose `sentAt`
    is `sent_at`), with `received_at` and `timestamp` left for the copy to fill in."""
    properties = message.get("properties") or {}
    traits = message.get("traits") or {}
    return (
        source_id, message["messageId"], message["type"], message.get("event"), message.get("name"),
        message.get("userId"), message.get("anonymousId"), None, None,
        sent_at - original,  # the skew; timestamp = received_at - skew
        original, sent_at, None,
        orjson.dumps(properties).decode(), orjson.dumps(traits).decode(),
        orjson.dumps(message.get("context") or {}).decode(), orjson.dumps(message.get("integrations") or {}).decode(),
        None,
    )  # fmt: skip


def generate(
    *, events: int, batch_size: int, warmup_batches: int, source_id: int, seed: int, users: int, zipf_s: float
) -> Workload:
    gen = Generator(seed=seed, users=users, zipf_s=zipf_s)
    sent_at = datetime.now(UTC).replace(microsecond=0)
    total = events + warmup_batches * batch_size
    kinds = gen.kinds(total)
    user_indexes = gen.user_indexes(total)
    bodies: list[bytes] = []
    counts: list[int] = []
    rows: list[tuple[Any, ...]] = []
    warmup: list[bytes] = []
    sent_iso = _iso(sent_at)
    message_bytes = 0
    mix = dict.fromkeys(("track", "page", "identify"), 0)
    for start in range(0, total, batch_size):
        chunk = []
        is_warmup = start >= events
        for i in range(start, min(start + batch_size, total)):
            original = sent_at - timedelta(milliseconds=gen.rng.randint(5, 20_000))
            message = gen.message(kinds[i], user_indexes[i], original)
            chunk.append(message)
            if not is_warmup:
                rows.append(stored_row(message, source_id=source_id, sent_at=sent_at, original=original))
                message_bytes += len(orjson.dumps(message))
                mix[message["type"]] += 1
        body = orjson.dumps({"batch": chunk, "sentAt": sent_iso})
        if is_warmup:
            warmup.append(body)
        else:
            bodies.append(body)
            counts.append(len(chunk))
    distinct = len(set(user_indexes[:events]))
    return Workload(bodies, counts, rows, warmup, message_bytes / max(events, 1), sent_at, mix, distinct)


# --- Processes ----------------------------------------------------------------------------------


def _die_with_parent() -> None:
    """In the child, before exec: get SIGTERM if the benchmark dies, so nothing is left running."""
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class Service:
    """A child process group (gunicorn, a Celery worker), stopped with `stop()`."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log: Path) -> None:
        self.name = name
        self.log = log
        self._log_file = log.open("ab")
        self.proc = subprocess.Popen(
            argv, cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=self._log_file, stderr=subprocess.STDOUT,
            start_new_session=True, preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
        )  # fmt: skip

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                say(f"{self.name} did not stop in {timeout:.0f} s; killing its process group")
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        # Its workers share its process group (start_new_session): none may outlive it.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, 0)
            time.sleep(0.5)
            os.killpg(self.proc.pid, signal.SIGKILL)
        self._log_file.close()

    def tail(self, lines: int = 30) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        return ""


def _manage(env: dict[str, str], *args: str, timeout: float = 300) -> str:
    result = subprocess.run(
        [PYTHON, str(ROOT / "manage.py"), *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )
    if result.returncode != 0:
        raise SetupError(f"manage.py {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result.stdout


def _celery_purge(env: dict[str, str]) -> None:
    """Empty the bench broker's queue, so no task of this run reaches a later worker."""
    with contextlib.suppress(subprocess.SubprocessError, OSError):
        subprocess.run(
            [PYTHON, "-m", "celery", "-A", "cdp", "purge", "-f"], cwd=ROOT, env=env, capture_output=True, timeout=60
        )


def tear_down(services: Sequence[Service], env: dict[str, str], var_dir: Path, *, keep_logs: bool) -> None:
    """Stop what a run started (newest first), empty its queue, and remove its logs unless
    asked to keep them."""
    for service in reversed(services):
        with contextlib.suppress(Exception):
            service.stop()
    _celery_purge(env)
    if keep_logs:
        say(f"logs kept in {var_dir}")
    else:
        shutil.rmtree(var_dir, ignore_errors=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_healthy(port: int, service: Service, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not service.alive():
            raise SetupError(f"gunicorn exited with {service.proc.returncode}:\n{service.tail()}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/healthz")
            if conn.getresponse().status == 200:
                conn.close()
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise SetupError(f"gunicorn did not answer /healthz in {timeout:.0f} s:\n{service.tail()}")


# --- CPU accounting (Linux /proc; only read) ------------------------------------------------------

_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _proc_cpu(pid: int) -> float:
    """utime + stime of one process, in seconds; 0 if it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = raw[raw.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / _TICK


def _pgid_pids(pgid: int) -> list[int]:
    pids = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            with contextlib.suppress(OSError, ValueError):
                if os.getpgid(int(entry.name)) == pgid:
                    pids.append(int(entry.name))
    return pids


def _postgres_pids(db: psycopg.Connection[Any]) -> list[int]:
    """This database's backends and the server's own processes (WAL writer, checkpointer,
    ...), not the backends of other databases: another run may share the server."""
    rows = db.execute(
        "SELECT pid FROM pg_stat_activity WHERE datname = current_database() OR backend_type <> 'client backend'"
    ).fetchall()
    db.commit()
    return [int(pid) for (pid,) in rows]


def _machine_cpu() -> tuple[float, float]:
    """(busy, steal) CPU seconds of the whole machine since boot, from /proc/stat."""
    try:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return 0.0, 0.0
    user, nice, system, _idle, _iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
    return (user + nice + system + irq + softirq) / _TICK, steal / _TICK


class CpuMeter:
    """CPU seconds used during a phase by each part of the run, and by the rest of the
    machine (`other`: anything this run did not start, e.g. a test suite running beside it,
    which makes the figures noisy)."""

    def __init__(self, db: psycopg.Connection[Any], services: dict[str, Service | None]) -> None:
        self.db = db
        self.services = {name: s for name, s in services.items() if s is not None}
        self.before = self._snapshot()
        self.machine_before = _machine_cpu()

    def _snapshot(self) -> dict[str, dict[int, float]]:
        snap = {name: {pid: _proc_cpu(pid) for pid in _pgid_pids(s.pid)} for name, s in self.services.items()}
        snap["postgres"] = {pid: _proc_cpu(pid) for pid in _postgres_pids(self.db)}
        snap["load generator"] = {0: time.process_time()}
        return snap

    def stop(self) -> dict[str, float]:
        after = self._snapshot()
        busy, steal = _machine_cpu()
        used = {
            name: sum(seconds - self.before.get(name, {}).get(pid, 0.0) for pid, seconds in pids.items())
            for name, pids in after.items()
        }
        used["other"] = max(0.0, busy - self.machine_before[0] - sum(used.values()))
        used["steal"] = steal - self.machine_before[1]
        return used


# --- HTTP load ------------------------------------------------------------------------------------


@dataclass(slots=True)
class LoadResult:
    seconds: float
    latencies: list[float] = field(default_factory=list)  # seconds, one per answered request
    events_acked: int = 0
    requests: int = 0
    connections: int = 0
    failures: list[str] = field(default_factory=list)
    stopped_early: str | None = None


def post_all(
    *, port: int, auth: str, bodies: Sequence[bytes], counts: Sequence[int], concurrency: int, max_seconds: float,
    stop: threading.Event,
) -> LoadResult:  # fmt: skip
    """Post every body once from `concurrency` threads, each with its own keep-alive
    connection (reopened whenever the server closes it). Bounded by `max_seconds`."""
    next_index = itertools.count().__next__  # atomic under the GIL
    headers = {"Authorization": auth, "Content-Type": "application/json", "User-Agent": "cdp-bench/1"}
    lock = threading.Lock()
    result = LoadResult(seconds=0.0)
    start = time.perf_counter()
    deadline = start + max_seconds
    last_answer = [start]

    def run() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        latencies: list[float] = []
        acked = requests = connects = 0
        failures: list[str] = []
        try:
            while not stop.is_set():
                i = next_index()
                if i >= len(bodies):
                    break
                if time.perf_counter() > deadline:
                    result.stopped_early = f"--max-seconds {max_seconds:g} reached"
                    break
                t0 = time.perf_counter()
                try:
                    if conn.sock is None:
                        connects += 1
                    conn.request("POST", "/v1/batch", body=bodies[i], headers=headers)
                    response = conn.getresponse()
                    payload = response.read()
                except (OSError, http.client.HTTPException) as exc:
                    conn.close()
                    failures.append(f"batch {i}: {type(exc).__name__}: {exc}")
                    continue
                t1 = time.perf_counter()
                requests += 1
                if response.status == 200 and payload == OK_BODY:
                    latencies.append(t1 - t0)
                    acked += counts[i]
                else:
                    failures.append(f"batch {i}: HTTP {response.status} {payload[:300]!r}")
                if len(failures) > 20:
                    stop.set()
                    result.stopped_early = "more than 20 failed requests"
            with lock:
                last_answer[0] = max(last_answer[0], time.perf_counter())
        finally:
            conn.close()
            with lock:
                result.latencies.extend(latencies)
                result.events_acked += acked
                result.requests += requests
                result.connections += connects
                result.failures.extend(failures)

    threads = [threading.Thread(target=run, name=f"load-{n}", daemon=True) for n in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        while thread.is_alive():
            thread.join(0.5)
    result.seconds = last_answer[0] - start
    return result


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of already sorted values."""
    if not sorted_values:
        return float("nan")
    rank = max(1, min(len(sorted_values), -(-q * len(sorted_values) // 100)))
    return sorted_values[int(rank) - 1]


# --- Database -----------------------------------------------------------------------------------


def _with_dbname(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + name))


def recreate_database(url: str, allow_drop: bool) -> None:
    name = urlsplit(url).path.lstrip("/")
    if not name:
        raise SetupError(f"--database-url names no database: {url}")
    if "bench" not in name and not allow_drop:
        raise SetupError(f"refusing to drop database {name!r}: its name lacks 'bench' (pass --allow-drop)")
    with psycopg.connect(_with_dbname(url, "postgres"), autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{name}"')


def empty_table(conn: psycopg.Connection[Any]) -> None:
    """Truncate the event log and the batches waiting for it, and checkpoint, so each timed
    phase starts from the same state."""
    conn.execute(f"TRUNCATE {TABLE}, {BATCHES}")
    conn.commit()
    with contextlib.suppress(psycopg.Error):
        conn.execute("CHECKPOINT")
        conn.commit()
    conn.rollback()


def count_rows(conn: psycopg.Connection[Any]) -> int:
    """Events stored: in the log, or accepted and waiting for the pipeline in a batch."""
    row = conn.execute(f"SELECT (SELECT count(*) FROM {TABLE}) + (SELECT coalesce(sum(size), 0) FROM {BATCHES})")
    found = row.fetchone()
    conn.commit()
    return int(found[0]) if found else 0


def count_waiting(conn: psycopg.Connection[Any]) -> int:
    """Events accepted and not yet in the log."""
    row = conn.execute(f"SELECT coalesce(sum(size), 0) FROM {BATCHES}").fetchone()
    conn.commit()
    return int(row[0]) if row else 0


def copy_reference(conn: psycopg.Connection[Any], rows: Sequence[tuple[Any, ...]]) -> tuple[float, int]:
    """COPY the rows in one transaction; returns (seconds, rows). `received_at` is now and
    `timestamp` is corrected for the skew, as the app does; preparing that is not timed."""
    received_at = datetime.now(UTC)
    ready = [(*r[:9], received_at - r[9], r[10], r[11], received_at, *r[13:]) for r in rows]
    sql = f"COPY {TABLE} ({', '.join(COLUMNS)}) FROM STDIN"
    start = time.perf_counter()
    with conn.cursor() as cursor, cursor.copy(sql) as copy:
        write_row = copy.write_row
        for row in ready:
            write_row(row)
    conn.commit()
    return time.perf_counter() - start, len(ready)


# --- The run ------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=(
            "Stored events/s through POST /v1/batch under gunicorn, request latency p50/p99, "
            "and the reference: psycopg COPY of the same rows into the same table."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    load = parser.add_argument_group("load")
    load.add_argument("--events", type=int, default=200_000, help="events to post in the timed run")
    load.add_argument("--batch-size", type=int, default=100, help="messages per /v1/batch request")
    load.add_argument("--concurrency", type=int, default=4, help="client threads, one connection each")
    load.add_argument("--warmup-batches", type=int, default=60, help="batches posted (then truncated) before timing")
    load.add_argument("--max-seconds", type=float, default=300, help="stop posting after this long, whatever is left")
    load.add_argument("--users", type=int, default=100_000, help="distinct users the Zipf law draws from")
    load.add_argument("--zipf", type=float, default=1.1, help="exponent of the Zipf law over users")
    load.add_argument("--seed", type=int, default=1, help="random seed of the workload")
    server = parser.add_argument_group("server")
    server.add_argument("--gunicorn-workers", type=int, default=3, help="gunicorn --workers")
    server.add_argument(
        "--worker-class",
        default="sync",
        help="gunicorn --worker-class: sync closes every connection, so each request goes to a free worker; "
        "gthread keeps them alive but each stays on the worker that accepted it, unevenly",
    )
    server.add_argument("--threads", type=int, default=2, help="gunicorn --threads (gthread only)")
    server.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0: any free one)")
    server.add_argument(
        "--gunicorn-extra", default="", metavar="ARGS", help="more gunicorn arguments, e.g. '--config FILE'"
    )
    server.add_argument("--with-worker", action="store_true", help="also run a Celery worker during the run")
    server.add_argument("--worker-pool", default="solo", help="Celery --pool of that worker (solo, prefork)")
    server.add_argument("--worker-concurrency", type=int, default=1, help="Celery --concurrency (prefork)")
    server.add_argument("--drain-timeout", type=float, default=120, help="with --with-worker, wait this long for it")
    target = parser.add_argument_group("targets")
    target.add_argument(
        "--database-url",
        default=os.environ.get("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/cdp_bench"),
        help="PostgreSQL database to DROP, re-create and migrate (env BENCH_DATABASE_URL)",
    )
    target.add_argument(
        "--allow-drop", action="store_true", help="allow dropping a database without 'bench' in its name"
    )
    target.add_argument(
        "--broker-url",
        default=os.environ.get("BENCH_BROKER_URL", "redis://127.0.0.1:6379/15"),
        help="Celery broker and cache (REDIS_URL) for the app; its queue is purged (env BENCH_BROKER_URL)",
    )
    target.add_argument("--skip-copy", action="store_true", help="skip the COPY reference")
    target.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    target.add_argument("--fail-under", type=float, default=0.0, help="exit 1 if stored events/s is below this")
    target.add_argument("--keep-logs", action="store_true", help="keep the gunicorn/Celery logs (path printed)")
    return parser


def app_env(args: argparse.Namespace, var_dir: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        DJANGO_SETTINGS_MODULE="cdp.settings",
        DATABASE_URL=args.database_url,
        CELERY_BROKER_URL=args.broker_url,
        REDIS_URL=args.broker_url,
        SECRET_KEY=secrets.token_urlsafe(50),
        ALLOWED_HOSTS="127.0.0.1,localhost",
        CDP_VAR_DIR=str(var_dir),
        DEBUG="false",
        CDP_CELERY_EAGER="false",
        LOG_LEVEL="WARNING",
        PYTHONUNBUFFERED="1",
    )
    return env


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _fmt(n: float) -> str:
    return f"{n:,.0f}"


def run(args: argparse.Namespace) -> int:
    if args.events < args.batch_size or args.concurrency < 1 or args.gunicorn_workers < 1:
        raise SetupError("--events must be at least --batch-size; --concurrency and --gunicorn-workers at least 1")
    var_dir = Path(tempfile.mkdtemp(prefix="cdp-bench-"))
    env = app_env(args, var_dir)
    services: list[Service] = []
    stop = threading.Event()
    report: dict[str, Any] = {}
    try:
        say(f"re-creating database {urlsplit(args.database_url).path.lstrip('/')} and migrating")
        recreate_database(args.database_url, args.allow_drop)
        _manage(env, "migrate", "--noinput")
        write_key = _manage(env, "create_source", "bench").strip().splitlines()[-1].strip()
        auth = "Basic " + base64.b64encode(f"{write_key}:".encode()).decode()
        db = psycopg.connect(args.database_url)
        source_id = int(db.execute("SELECT id FROM ingest_source WHERE write_key = %s", [write_key]).fetchone()[0])
        db.commit()

        t0 = time.perf_counter()
        work = generate(
            events=args.events, batch_size=args.batch_size, warmup_batches=args.warmup_batches, source_id=source_id,
            seed=args.seed, users=args.users, zipf_s=args.zipf,
        )  # fmt: skip
        body_mb = sum(map(len, work.bodies)) / 1e6
        say(
            f"generated {len(work.bodies):,} bodies ({body_mb:,.1f} MB, {work.message_bytes:,.0f} B/message, "
            f"{work.distinct_users:,} distinct users) in {time.perf_counter() - t0:.1f} s"
        )

        _celery_purge(env)
        port = args.port or _free_port()
        gunicorn_argv = [
            PYTHON, "-m", "gunicorn", "cdp.wsgi", "--bind", f"127.0.0.1:{port}",
            "--workers", str(args.gunicorn_workers), "--worker-class", args.worker_class,
            "--log-level", "warning", "--timeout", "120", "--graceful-timeout", "10", "--backlog", "2048",
        ]  # fmt: skip
        if args.worker_class == "gthread":
            gunicorn_argv += ["--threads", str(args.threads)]
        gunicorn_argv += shlex.split(args.gunicorn_extra)
        gunicorn = Service("gunicorn", gunicorn_argv, env, var_dir / "gunicorn.log")
        services.append(gunicorn)
        worker = None
        if args.with_worker:
            worker = Service(
                "celery",
                [PYTHON, "-m", "celery", "-A", "cdp", "worker", "--pool", args.worker_pool,
                 "--concurrency", str(args.worker_concurrency), "--loglevel", "WARNING",
                 "--without-gossip", "--without-mingle", "--without-heartbeat"],
                env, var_dir / "celery.log",
            )  # fmt: skip
            services.append(worker)
        _wait_healthy(port, gunicorn)
        server_desc = f"gunicorn {args.gunicorn_workers} x {args.worker_class}" + (
            f" x {args.threads} threads" if args.worker_class == "gthread" else ""
        )
        say(f"{server_desc} on 127.0.0.1:{port}; warming up with {len(work.warmup)} batches")

        warm = post_all(
            port=port, auth=auth, bodies=work.warmup, counts=[args.batch_size] * len(work.warmup),
            concurrency=args.concurrency, max_seconds=120, stop=stop,
        )  # fmt: skip
        if warm.failures:
            raise SetupError("warm-up failed:\n  " + "\n  ".join(warm.failures[:5]) + "\n" + gunicorn.tail())
        if worker is not None:
            _wait_processed(db, 0, timeout=60)
        empty_table(db)

        say(f"posting {args.events:,} events in {len(work.bodies):,} requests from {args.concurrency} threads")
        meter = CpuMeter(db, {"gunicorn": gunicorn, "celery": worker})
        load = post_all(
            port=port, auth=auth, bodies=work.bodies, counts=work.counts, concurrency=args.concurrency,
            max_seconds=args.max_seconds, stop=stop,
        )  # fmt: skip
        cpu = meter.stop()
        stored = count_rows(db)
        http_eps = stored / load.seconds if load.seconds > 0 else 0.0
        latencies = sorted(load.latencies)
        p50, p99 = percentile(latencies, 50) * 1000, percentile(latencies, 99) * 1000

        drain: dict[str, Any] | None = None
        if worker is not None:
            drained_after = _wait_processed(db, load.seconds, timeout=args.drain_timeout)
            left = count_waiting(db)
            drain = {"seconds_after_load": drained_after, "unprocessed": left}
        for service in reversed(services):
            service.stop()

        copy_eps = copy_seconds = 0.0
        copy_cpu: dict[str, float] = {}
        if not args.skip_copy:
            empty_table(db)
            say(f"reference: COPY of the same {len(work.rows):,} rows")
            meter = CpuMeter(db, {})
            copy_seconds, copied = copy_reference(db, work.rows)
            copy_cpu = meter.stop()
            if count_rows(db) != copied:
                raise SetupError("COPY stored a different number of rows than it wrote")
            copy_eps = copied / copy_seconds
            empty_table(db)
        db.close()

        worker_desc = f"worker --pool {args.worker_pool} --concurrency {args.worker_concurrency}" if worker else None
        ok = not load.failures and stored == load.events_acked == args.events
        report = {
            "events": args.events, "batch_size": args.batch_size, "message_bytes": round(work.message_bytes),
            "mix": work.mix, "distinct_users": work.distinct_users, "concurrency": args.concurrency,
            "server": server_desc, "celery_worker": worker_desc, "requests": load.requests,
            "connections_opened": load.connections,
            "seconds": round(load.seconds, 3), "events_acked": load.events_acked, "events_stored": stored,
            "http_events_per_s": round(http_eps), "latency_p50_ms": round(p50, 2), "latency_p99_ms": round(p99, 2),
            "copy_seconds": round(copy_seconds, 3), "copy_events_per_s": round(copy_eps),
            "ratio": round(http_eps / copy_eps, 4) if copy_eps else None, "cpu_seconds_http": _round(cpu),
            "cpu_seconds_copy": _round(copy_cpu), "drain": drain, "stored_exactly_once": ok,
            "failures": load.failures[:20], "stopped_early": load.stopped_early,
        }  # fmt: skip
        print_report(report, args)
        if args.json:
            args.json.write_text(json.dumps(report, indent=2) + "\n")
        if not ok:
            return 1
        return 1 if http_eps < args.fail_under else 0
    except KeyboardInterrupt:
        stop.set()
        say("interrupted; stopping what was started")
        return 130
    finally:
        stop.set()
        tear_down(services, env, var_dir, keep_logs=args.keep_logs)


def _round(cpu: dict[str, float]) -> dict[str, float]:
    return {k: round(v, 2) for k, v in cpu.items()}


def _wait_processed(db: psycopg.Connection[Any], elapsed: float, *, timeout: float) -> float | None:
    """Wait for the worker to write every accepted event to the log; seconds waited, or None."""
    start = time.perf_counter()
    while time.perf_counter() - start < timeout:
        if count_waiting(db) == 0:
            return time.perf_counter() - start
        time.sleep(0.25)
    return None


def print_report(r: dict[str, Any], args: argparse.Namespace) -> None:
    mix = r["mix"]
    total = max(sum(mix.values()), 1)
    out = sys.stdout
    out.write("\n")
    out.write(f"workload   {r['events']:,} events in batches of {r['batch_size']}, ~{r['message_bytes']:,} B each; "
              + ", ".join(f"{k} {100 * v / total:.0f}%" for k, v in mix.items())
              + f"; {r['distinct_users']:,} distinct users (Zipf s={args.zipf:g} over {args.users:,})\n")  # fmt: skip
    out.write(f"server     {r['server']}; {r['concurrency']} client threads (http.client, keep-alive when the "
              f"server allows): {r['requests']:,} requests over {r['connections_opened']:,} connections\n")  # fmt: skip
    out.write(f"celery     {r['celery_worker'] or 'no worker (the tasks wait in the bench broker, then are purged)'}\n")
    out.write(f"machine    {os.cpu_count()} CPUs, Python {platform.python_version()}\n\n")
    ratio = f"{r['ratio']:.3f}" if r["ratio"] is not None else "n/a"
    rows = [
        ("HTTP /v1/batch, stored", _fmt(r["http_events_per_s"]), f"{r['latency_p50_ms']:.1f}",
         f"{r['latency_p99_ms']:.1f}", f"{r['seconds']:.2f}"),
        ("psycopg COPY (reference)", _fmt(r["copy_events_per_s"]) if r["copy_events_per_s"] else "skipped", "", "",
         f"{r['copy_seconds']:.2f}" if r["copy_seconds"] else ""),
        ("ratio HTTP / COPY", ratio, "", "", ""),
    ]  # fmt: skip
    header = ("", "events/s", "p50 ms", "p99 ms", "seconds")
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(5)]
    for row in [header, *rows]:
        out.write("  ".join(str(c).ljust(widths[0]) if i == 0 else str(c).rjust(widths[i]) for i, c in enumerate(row)))
        out.write("\n")
    out.write("\n")
    cpus = os.cpu_count() or 1
    for label, cpu, events, seconds in (
        ("HTTP", r["cpu_seconds_http"], r["events_stored"], r["seconds"]),
        ("COPY", r["cpu_seconds_copy"], r["events"], r["copy_seconds"]),
    ):
        if not cpu or not events:
            continue
        ours = {k: v for k, v in cpu.items() if k not in ("other", "steal")}
        per_k = ", ".join(f"{k} {v * 1e6 / events:.1f}" for k, v in ours.items() if v > 0.005)
        total = sum(ours.values())
        cap = f"; at that cost {cpus} CPUs cap it at ~{_fmt(cpus * events / total)} events/s" if label == "HTTP" else ""
        out.write(f"CPU ms per 1,000 events, {label}: {per_k}; total {total * 1e6 / events:.1f}{cap}\n")
        noise = cpu.get("other", 0.0) + cpu.get("steal", 0.0)
        if seconds and noise > 0.1 * cpus * seconds:
            share = 100 * noise / (cpus * seconds)
            out.write(f"  WARNING: other work used {noise:.1f} of the {cpus * seconds:.1f} CPU-seconds of the "
                      f"{label} phase ({share:.0f}%): its figure is low and noisy\n")  # fmt: skip
    if r["drain"] is not None:
        d = r["drain"]
        if d["seconds_after_load"] is None:
            left = d["unprocessed"]
            out.write(f"Celery: {left:,} events still unprocessed {args.drain_timeout:g} s after the load\n")
        else:
            total_s = r["seconds"] + d["seconds_after_load"]
            out.write(f"Celery: all events processed {d['seconds_after_load']:.1f} s after the load "
                      f"({_fmt(r['events_stored'] / total_s)} events/s end to end)\n")  # fmt: skip
    check = "yes" if r["stored_exactly_once"] else "NO"
    out.write(f"stored exactly once: {check} (sent {r['events']:,}, answered 200 for {r['events_acked']:,}, "
              f"counted {r['events_stored']:,})\n")  # fmt: skip
    if r["stopped_early"]:
        out.write(f"stopped early: {r['stopped_early']}\n")
    for failure in r["failures"][:5]:
        out.write(f"  failure: {failure}\n")
    eps = r["http_events_per_s"]
    goal_ratio = r["ratio"] is not None and r["ratio"] >= 0.10
    out.write(f"bar 10,000 events/s: {'met' if eps >= 10_000 else 'NOT met'}; goal 20,000 events/s at a ratio "
              f">= 0.10: {'met' if eps >= 20_000 and goal_ratio else 'NOT met'}\n")  # fmt: skip
    out.flush()


def bench_main(run: Callable[[argparse.Namespace], int], args: argparse.Namespace) -> int:
    """Run a benchmark: SIGTERM stops it like Ctrl-C (servers are stopped), and a setup
    failure exits 2 with its reason. Every benchmark's `main` ends here."""
    with sigterm_as_interrupt():
        try:
            return run(args)
        except SetupError as exc:
            say(f"setup failed: {exc}")
            return 2


def main(argv: Sequence[str] | None = None) -> int:
    return bench_main(run, build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
