#!/usr/bin/env python3
"""Email-provider webhook benchmark: stored events/s through the providers' webhook URLs, in
their own batch shapes, against `POST /v1/batch` for the same number of events in the same run.

    .venv/bin/python bench/webhooks.py                    # 100,000 events of each path
    .venv/bin/python bench/webhooks.py --events 30000

What one run does, in order:

1. Drops and re-creates a dedicated PostgreSQL database (`cdp_bench_webhooks` by default; a
   name without "bench" is refused unless `--allow-drop`), migrates it, and creates with
   `manage.py create_source` an HTTP source and one source each for Mailjet, SendGrid and
   Mandrill, the three providers that batch: the URLs it prints are the ones posted to.
2. Generates everything before timing: `--events` provider events from `--people`
   recipients over a few campaigns (per recipient a send, a delivery, opens, some clicks,
   bounces, unsubscribes), split evenly between
   - Mailjet grouped arrays (Basic auth from the printed URL),
   - SendGrid JSON arrays, each signed with ECDSA P-256 over timestamp + raw body by a key
     made here, whose public half the source holds,
   - Mandrill `mandrill_events` form batches, each signed with HMAC-SHA1 over the printed URL
     and the form, with the key the source holds;
   all of `--batch-size` events per request; and the same number of the ingest benchmark's
   analytics.js-shaped messages as `/v1/batch` bodies of `--batch-size` (`bench/ingest.py`).
3. Starts gunicorn, waits for /healthz, warms both paths up, empties the event table, then
   posts the webhook bodies from `--concurrency` threads (keep-alive `http.client`). A
   request counts when it answers 200 with no refused event. Stored events/s = rows
   counted / time from the first request to the last answer; the count must equal the events
   sent. Empties the table, and does the same with the `/v1/batch` bodies.
4. Prints both rates and their ratio (webhooks / batch); the bar is 0.5. Exit status 0 when
   every event of both phases was stored exactly once and the bar is met, 1 otherwise, 2 on a
   setup error. Run one benchmark at a time: `flock /tmp/bench.lock .venv/bin/python bench/webhooks.py`.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import http.client
import itertools
import json
import random
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import psycopg  # noqa: E402
from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402

from bench.ingest import (  # noqa: E402  (after the path setup; re-runs itself in .venv if needed)
    PYTHON,
    Service,
    SetupError,
    _celery_purge,
    _free_port,
    _manage,
    _wait_healthy,
    app_env,
    bench_main,
    count_rows,
    empty_table,
    generate,
    percentile,
    say,
    tear_down,
)

BAR = 0.5
_AGENTS = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.3 Safari/605.1.15",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_3 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148",
    "Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)",
)
_CAMPAIGNS = ("spring_sale_2025", "weekly_digest_11", "cart_reminder", "welcome_series_1")
# Per recipient of a send: the provider events that follow, by kind (Mailjet's names).
_LIFECYCLE = (("sent", 1.0), ("open", 0.55), ("open", 0.25), ("click", 0.15), ("bounce", 0.03), ("unsub", 0.01))


@dataclass(slots=True)
class Request:
    path: str
    headers: dict[str, str]
    body: bytes
    events: int


@dataclass
class Load:
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)
    events_acked: int = 0
    failures: list[str] = field(default_factory=list)


# --- Provider events -----------------------------------------------------------------------------


def lifecycle_events(n: int, *, people: int, seed: int) -> list[dict[str, Any]]:
    """`n` email events as (kind, recipient, message, time, campaign, agent, url) records."""
    rng = random.Random(seed)
    out: list[dict[str, Any]] = []
    base = 1741960800
    for message in itertools.count():
        person = rng.randrange(people)
        campaign = _CAMPAIGNS[message % len(_CAMPAIGNS)]
        for step, (kind, chance) in enumerate(_LIFECYCLE):
            if rng.random() > chance:
                continue
            out.append({
                "kind": kind, "email": f"reader{person}@example.com", "user": f"u_{person}",
                "message": 288230377001234567 + message, "time": base + message + step * 600,
                "campaign": campaign, "agent": rng.choice(_AGENTS), "url": "https://shop.example.com/spring-sale",
            })  # fmt: skip
            if len(out) == n:
                return out
    raise AssertionError("unreachable")


def mailjet_event(e: dict[str, Any]) -> dict[str, Any]:
    body: dict[str, Any] = {
        "event": e["kind"], "time": e["time"], "MessageID": e["message"],
        "Message_GUID": f"7c9e6679-7425-40de-944b-{e['message'] % 10**12:012d}", "email": e["email"],
        "mj_campaign_id": 7812345, "mj_contact_id": 1984512377, "customcampaign": e["campaign"],
        "CustomID": f"send-{e['message']}", "Payload": json.dumps({"cdp_user_id": e["user"]}),
    }  # fmt: skip
    if e["kind"] == "sent":
        body.update(mj_message_id=str(e["message"]), smtp_reply="sent (250 2.0.0 OK 1741960800 - gsmtp)")
    elif e["kind"] in ("open", "click", "unsub"):
        body.update(ip="203.0.113.24", geo="FR", agent=e["agent"])
        if e["kind"] == "click":
            body["url"] = e["url"]
    elif e["kind"] == "bounce":
        body.update(blocked=False, hard_bounce=True, error_related_to="recipient", error="user unknown",
                    comment="550 5.1.1 User unknown")  # fmt: skip
    return body


_SENDGRID_KIND = {"sent": "delivered", "open": "open", "click": "click", "bounce": "bounce", "unsub": "unsubscribe"}


def sendgrid_event(e: dict[str, Any], index: int) -> dict[str, Any]:
    kind = _SENDGRID_KIND[e["kind"]]
    body: dict[str, Any] = {
        "email": e["email"], "timestamp": e["time"], "smtp-id": f"<{e['message']}@geopod-ismtpd-3>", "event": kind,
        "category": ["newsletter", e["campaign"]], "sg_event_id": f"ev-{e['message']}-{index}",
        "sg_message_id": f"{e['message']}.recvd-7c9b5d6f8-x2k4p-1", "cdp_user_id": e["user"],
        "campaign": e["campaign"], "asm_group_id": 4521,
    }  # fmt: skip
    if kind in ("open", "click"):
        body.update(useragent=e["agent"], ip="203.0.113.24")
        if kind == "click":
            body.update(url=e["url"], url_offset={"index": 0, "type": "html"})
    elif kind == "delivered":
        body.update(ip="198.51.100.21", response="250 2.0.0 OK", tls=1)
    elif kind == "bounce":
        body.update(reason="550 5.1.1 The email account does not exist.", status="5.1.1", type="bounce")
    return body


_MANDRILL_KIND = {"sent": "send", "open": "open", "click": "click", "bounce": "hard_bounce", "unsub": "unsub"}


def mandrill_event(e: dict[str, Any]) -> dict[str, Any]:
    kind = _MANDRILL_KIND[e["kind"]]
    msg = {
        "ts": e["time"], "subject": "Spring sale starts now", "email": e["email"], "sender": "news@shop.example.com",
        "tags": [e["campaign"]], "opens": [], "clicks": [], "state": "sent", "metadata": {"cdp_user_id": e["user"]},
        "_id": f"{e['message']:032x}", "_version": "Xc1dVq3HpbK1Vb3oPZ2uRw",
    }  # fmt: skip
    body: dict[str, Any] = {"event": kind, "msg": msg, "_id": msg["_id"], "ts": e["time"]}
    if kind in ("open", "click"):
        body.update(ip="203.0.113.24", user_agent=e["agent"])
        if kind == "click":
            body["url"] = e["url"]
    return body


@dataclass(slots=True)
class Sources:
    mailjet_url: str
    sendgrid_url: str
    mandrill_url: str
    mandrill_key: str
    sendgrid_key: ec.EllipticCurvePrivateKey


def webhook_requests(events: list[dict[str, Any]], *, batch: int, sources: Sources) -> list[Request]:
    """The events split in three, each third in its provider's batch shape and signature."""
    third = len(events) // 3
    parts = (events[:third], events[third : 2 * third], events[2 * third :])
    out: list[Request] = []
    mj = urlsplit(sources.mailjet_url)
    mj_auth = "Basic " + base64.b64encode(f"{mj.username}:{mj.password}".encode()).decode()
    for start in range(0, len(parts[0]), batch):
        chunk = [mailjet_event(e) for e in parts[0][start : start + batch]]
        out.append(Request(mj.path, {"Authorization": mj_auth, "Content-Type": "application/json"},
                           json.dumps(chunk).encode(), len(chunk)))  # fmt: skip
    sg_path = urlsplit(sources.sendgrid_url).path
    for start in range(0, len(parts[1]), batch):
        chunk = [sendgrid_event(e, start + i) for i, e in enumerate(parts[1][start : start + batch])]
        body = json.dumps(chunk).encode() + b"\r\n"
        stamp = str(int(time.time()))
        signature = sources.sendgrid_key.sign(stamp.encode() + body, ec.ECDSA(hashes.SHA256()))
        out.append(Request(sg_path, {
            "Content-Type": "application/json", "X-Twilio-Email-Event-Webhook-Timestamp": stamp,
            "X-Twilio-Email-Event-Webhook-Signature": base64.b64encode(signature).decode(),
        }, body, len(chunk)))  # fmt: skip
    md_path = urlsplit(sources.mandrill_url).path
    for start in range(0, len(parts[2]), batch):
        chunk = [mandrill_event(e) for e in parts[2][start : start + batch]]
        events_json = json.dumps(chunk)
        signed = sources.mandrill_url + "mandrill_events" + events_json
        digest = hmac.new(sources.mandrill_key.encode(), signed.encode(), hashlib.sha1).digest()
        out.append(Request(md_path, {
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Mandrill-Signature": base64.b64encode(digest).decode(),
        }, urlencode({"mandrill_events": events_json}).encode(), len(chunk)))  # fmt: skip
    random.Random(7).shuffle(out)  # the three providers post at the same time
    return out


# --- Load --------------------------------------------------------------------------------------


def post(port: int, requests: Sequence[Request], *, concurrency: int, max_seconds: float) -> Load:
    """Post every request once from `concurrency` keep-alive threads. A request counts when
    it answers 200 with no refused event (`rejected` absent)."""
    next_index = itertools.count().__next__
    load, lock = Load(), threading.Lock()
    start = time.perf_counter()
    last = [start]

    def run() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        try:
            while True:
                i = next_index()
                if i >= len(requests) or time.perf_counter() - start > max_seconds:
                    break
                r = requests[i]
                t0 = time.perf_counter()
                try:
                    conn.request("POST", r.path, body=r.body, headers={**r.headers, "User-Agent": "cdp-bench/1"})
                    response = conn.getresponse()
                    payload = response.read()
                except (OSError, http.client.HTTPException) as exc:
                    conn.close()
                    with lock:
                        load.failures.append(f"{r.path}: {type(exc).__name__}: {exc}")
                    continue
                elapsed = time.perf_counter() - t0
                ok = response.status == 200 and b'"rejected"' not in payload
                with lock:
                    if ok:
                        load.latencies.append(elapsed)
                        load.events_acked += r.events
                    else:
                        load.failures.append(f"{r.path}: HTTP {response.status} {payload[:300]!r}")
                    last[0] = max(last[0], time.perf_counter())
        finally:
            conn.close()

    threads = [threading.Thread(target=run, daemon=True) for _ in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    load.seconds = last[0] - start
    return load


# --- The run -------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--events", type=int, default=100_000, help="events through each path (default 100,000)")
    p.add_argument("--batch-size", type=int, default=100, help="events per request, both paths (default 100)")
    p.add_argument("--people", type=int, default=20_000, help="distinct recipients (default 20,000)")
    p.add_argument("--concurrency", type=int, default=4)
    p.add_argument("--gunicorn-workers", type=int, default=3)
    p.add_argument("--max-seconds", type=float, default=600)
    p.add_argument("--database-url", default="postgres://postgres@127.0.0.1:5432/cdp_bench_webhooks")
    p.add_argument("--broker-url", default="redis://127.0.0.1:6379/15")
    p.add_argument("--allow-drop", action="store_true")
    p.add_argument("--seed", type=int, default=5)
    return p


def run(args: argparse.Namespace) -> int:
    from bench.ingest import recreate_database

    var_dir = Path(tempfile.mkdtemp(prefix="cdp-bench-webhooks-"))
    env = app_env(args, var_dir)
    gunicorn: Service | None = None
    try:
        say(f"re-creating database {urlsplit(args.database_url).path.lstrip('/')} and migrating")
        recreate_database(args.database_url, args.allow_drop)
        _manage(env, "migrate", "--noinput")
        port = _free_port()
        base = f"http://127.0.0.1:{port}"
        write_key = _manage(env, "create_source", "bench").strip().splitlines()[-1]
        sg_key = ec.generate_private_key(ec.SECP256R1())
        sg_public = base64.b64encode(sg_key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)).decode()  # fmt: skip
        last = lambda *a: _manage(env, "create_source", *a, "--base-url", base).strip().splitlines()[-1]  # noqa: E731
        sources = Sources(
            mailjet_url=last("bench mailjet", "--kind", "mailjet"),
            sendgrid_url=last("bench sendgrid", "--kind", "sendgrid", "--signing-key", sg_public),
            mandrill_url=last("bench mandrill", "--kind", "mandrill", "--signing-key", "bench-mandrill-key"),
            mandrill_key="bench-mandrill-key",
            sendgrid_key=sg_key,
        )
        db = psycopg.connect(args.database_url)
        source_id = int(db.execute("SELECT id FROM ingest_source WHERE write_key = %s", [write_key]).fetchone()[0])
        db.commit()

        t0 = time.perf_counter()
        warm_n = 6 * args.batch_size
        events = lifecycle_events(args.events + warm_n, people=args.people, seed=args.seed)
        hooks = webhook_requests(events[: args.events], batch=args.batch_size, sources=sources)
        warm_hooks = webhook_requests(events[args.events :], batch=args.batch_size, sources=sources)
        work = generate(events=args.events, batch_size=args.batch_size, warmup_batches=6, source_id=source_id,
                        seed=args.seed, users=args.people, zipf_s=1.1)  # fmt: skip
        auth = "Basic " + base64.b64encode(f"{write_key}:".encode()).decode()
        batch = [Request("/v1/batch", {"Authorization": auth, "Content-Type": "application/json"}, b, n)
                 for b, n in zip(work.bodies, work.counts, strict=True)]  # fmt: skip
        warm_batch = [Request("/v1/batch", batch[0].headers, b, args.batch_size) for b in work.warmup]
        hook_bytes = sum(len(r.body) for r in hooks) / args.events
        say(f"generated {len(hooks):,} webhook requests ({hook_bytes:,.0f} B/event) and {len(batch):,} /v1/batch "
            f"bodies ({work.message_bytes:,.0f} B/message) in {time.perf_counter() - t0:.1f} s")  # fmt: skip

        _celery_purge(env)
        gunicorn = Service("gunicorn", [
            PYTHON, "-m", "gunicorn", "cdp.wsgi", "--bind", f"127.0.0.1:{port}", "--workers",
            str(args.gunicorn_workers), "--log-level", "warning", "--timeout", "120", "--backlog", "2048",
        ], env, var_dir / "gunicorn.log")  # fmt: skip
        _wait_healthy(port, gunicorn)
        for name, warm in (("webhooks", warm_hooks), ("/v1/batch", warm_batch)):
            result = post(port, warm, concurrency=args.concurrency, max_seconds=120)
            if result.failures:
                raise SetupError(f"{name} warm-up failed:\n  " + "\n  ".join(result.failures[:5]) + gunicorn.tail())
        figures = {}
        for name, load_requests in (("webhooks", hooks), ("batch", batch)):
            empty_table(db)
            say(f"posting {args.events:,} events through {name} in {len(load_requests):,} requests")
            load = post(port, load_requests, concurrency=args.concurrency, max_seconds=args.max_seconds)
            stored = count_rows(db)
            figures[name] = (load, stored)
        empty_table(db)
        db.close()
        return report(args, figures)
    except KeyboardInterrupt:
        say("interrupted; stopping what was started")
        return 130
    finally:
        tear_down([gunicorn] if gunicorn is not None else [], env, var_dir, keep_logs=False)


def report(args: argparse.Namespace, figures: dict[str, tuple[Load, int]]) -> int:
    rows = []
    rates = {}
    ok = True
    for name, label in (("webhooks", "webhooks (Mailjet, SendGrid, Mandrill batches), stored"),
                        ("batch", "HTTP /v1/batch (reference), stored")):  # fmt: skip
        load, stored = figures[name]
        rate = stored / load.seconds if load.seconds else 0.0
        rates[name] = rate
        lat = sorted(load.latencies)
        rows.append((label, f"{rate:,.0f}", f"{percentile(lat, 50) * 1000:.1f}", f"{percentile(lat, 99) * 1000:.1f}",
                     f"{load.seconds:.2f}"))  # fmt: skip
        exact = not load.failures and stored == load.events_acked == args.events
        ok = ok and exact
        if not exact:
            say(f"{name}: sent {args.events:,}, acknowledged {load.events_acked:,}, stored {stored:,}; "
                + "; ".join(load.failures[:3]))  # fmt: skip
    ratio = rates["webhooks"] / rates["batch"] if rates["batch"] else 0.0
    rows.append(("ratio webhooks / batch", f"{ratio:.3f}", "", "", ""))
    header = ("", "events/s", "p50 ms", "p99 ms", "seconds")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(5)]
    print(f"\n{args.events:,} events per path, {args.batch_size} per request, {args.concurrency} client threads, "
          f"gunicorn {args.gunicorn_workers} sync workers\n")  # fmt: skip
    for row in [header, *rows]:
        print("  ".join(c.ljust(widths[0]) if i == 0 else c.rjust(widths[i]) for i, c in enumerate(row)))
    print(f"\nstored exactly once: {'yes' if ok else 'NO'}; bar ratio >= {BAR}: {'met' if ratio >= BAR else 'NOT met'}")
    return 0 if ok and ratio >= BAR else 1


def main(argv: Sequence[str] | None = None) -> int:
    return bench_main(run, build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
