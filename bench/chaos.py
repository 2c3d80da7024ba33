#!/usr/bin/env python3
"""Chaos benchmark: the identity benchmark's stream through HTTP while processes are killed and
the broker and the database go away. Not a timed test, and not part of CI.

    .venv/bin/python bench/chaos.py                  # ~1,500 events/s for 150 s, twice (~8 minutes)
    .venv/bin/python bench/chaos.py --rate 1000 --json chaos.json

By default it makes its own PostgreSQL cluster and Redis on spare ports (`initdb` into a
temporary directory, run as the `postgres` user when started as root; `redis-server` with
an append-only file, as docker-compose runs it) and deletes them after the run: its outage
phases stop and start them, which must never disturb the machine's own services (other work
uses them meanwhile). `--database-url`, `--broker-url` and the `--*-stop-command` /
`--*-start-command` options point it at given services instead.

What one run does:

1. Generates the identity benchmark's population (`bench/identity.py`: devices, logins,
   emails, family devices, bogus ids, a shared email) sized to `--rate` x `--seconds`, and
   its `/v1/batch` bodies of 100 messages.
2. Migrates a fresh database, creates a source, and starts gunicorn (production settings,
   2 gthread workers x 2 threads), a Celery worker (prefork, 2 processes; restarted by a
   supervisor thread when it dies whole) and Celery beat (the sweep).
3. **Calm run**, the reference: posts every body at `--rate` events/s from 8 client threads,
   each body retried until answered 200; waits until every batch is resolved; reads each
   event's profile and scores precision and recall against the truth.
4. Empties the profile tables and posts the same stream again, the **chaos run**:
   - from 10 s to 40 s: SIGKILL a Celery pool process every 2-4 s, a gunicorn worker every
     5-8 s, and the whole Celery worker twice (its supervisor starts a new one);
   - at 45 s: Redis stopped for `--outage-seconds` (20), then started again;
   - at 95 s: PostgreSQL stopped (fast shutdown: every connection cut) for 20 s, then started.
   The client retries every body as an SDK would: after `Retry-After` (at most 5 s) when the
   answer has one, after 0.2 s on a dropped connection.
5. Waits until every batch is resolved, then checks and prints: every message answered 200
   is in the log exactly once, with a profile; messages answered otherwise were retried and
   are in once; no profile breaks a rule (user_id 1, email 5, 1,000 identifiers, 100 merges);
   precision and recall against the calm run's; `/v1/batch` p50/p99 during the Redis outage
   against the calm run's whole p99; every answer during the PostgreSQL outage that was not
   a JSON 503 with Retry-After; and how long the pipeline took to catch up after each outage
   (until every body due before the service came back was answered 200, and every batch
   accepted until then was resolved).

Bars (issue 17): 0 events lost, 0 duplicated; `/v1/batch` p99 during the Redis outage at most
2 x the calm run's; 0 answers other than 200 or a JSON 503 with Retry-After during the
PostgreSQL outage; each catch-up under 60 s. Exit status 0 when every bar is met, 1 if one is
missed, 2 on a setup error.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import itertools
import json
import os
import random
import secrets
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
_VENV_PYTHON = ROOT / ".venv" / "bin" / "python"
try:
    import psycopg
except ImportError:  # a Python outside the project's virtualenv: re-run this script inside it
    if _VENV_PYTHON.exists() and Path(sys.prefix).resolve() != (ROOT / ".venv").resolve():
        os.execv(str(_VENV_PYTHON), [str(_VENV_PYTHON), str(Path(__file__).resolve()), *sys.argv[1:]])
    raise
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.chaos_load import LoadLog, post_at_rate  # noqa: E402
from bench.chaos_services import (  # noqa: E402
    CommandService,
    ControlledService,
    PrivatePostgres,
    PrivateRedis,
    Supervised,
    kill_one_child,
)
from bench.identity import (  # noqa: E402
    PopulationBuilder,
    Workload,
    build_workload,
    linkable_components,
    read_profiles,
    score,
)
from bench.ingest import (  # noqa: E402
    Service,
    SetupError,
    _free_port,
    _manage,
    _wait_healthy,
    bench_main,
    percentile,
    recreate_database,
)

PYTHON = sys.executable
EVENTS_PER_PERSON = 6.72  # the identity population's mean (672,079 events for 100,000 people)
TABLES = ("profiles_event", "profiles_eventbatch", "profiles_profile", "profiles_identity", "profiles_identitylink",
          "profiles_merge", "profiles_demotion", "profiles_identityaudit", "ingest_ingestcounter",
          "ingest_rejectedmessage")  # fmt: skip


def say(message: str) -> None:
    print(f"[chaos] {message}", file=sys.stderr, flush=True)


@dataclass(slots=True)
class Outage:
    name: str
    stopped: float = 0.0  # wall clock
    started: float = 0.0
    caught_up: float | None = None  # seconds after `started`


@dataclass(slots=True)
class ChaosLog:
    kills: Counter[str] = field(default_factory=Counter)
    outages: list[Outage] = field(default_factory=list)
    kill_window: tuple[float, float] = (0.0, 0.0)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rate", type=float, default=1500, help="events per second the client sends (100 a request)")
    p.add_argument("--seconds", type=float, default=150, help="how long the stream lasts (at least 130)")
    p.add_argument("--outage-seconds", type=float, default=20)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--client-threads", type=int, default=8)
    p.add_argument("--retry-cap", type=float, default=5.0, help="the client waits at most this for a retry")
    p.add_argument("--drain-timeout", type=float, default=420, help="wait this long for the pipeline after the load")
    p.add_argument("--postgres-port", type=int, default=5544, help="the private cluster's port")
    p.add_argument("--redis-port", type=int, default=6390, help="the private Redis's port")
    p.add_argument("--database-url", help="use this PostgreSQL database instead of a private cluster (dropped!)")
    p.add_argument("--broker-url", help="use this Redis (DBs 0 and 1) instead of a private one, e.g. redis://h:6379")
    for service in ("postgres", "redis"):
        p.add_argument(f"--{service}-stop-command", help=f"with a given {service}: how to stop it for its outage")
        p.add_argument(f"--{service}-start-command", help=f"with a given {service}: how to start it again")
    p.add_argument("--allow-drop", action="store_true", help="allow a given database whose name lacks 'bench'")
    p.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    p.add_argument("--keep-logs", action="store_true", help="keep the servers' logs (path printed)")
    return p


def _truncate(url: str) -> None:
    """Empty what a run fills; sequences keep counting, so every worker's backlog frontier
    (a batch id) stays meaningful."""
    with psycopg.connect(url, autocommit=True) as db:
        db.execute(f"TRUNCATE {', '.join(TABLES)} CASCADE")


def _waiting(url: str) -> tuple[int, float | None]:
    """Batches waiting for the pipeline, and when the oldest was accepted (epoch seconds)."""
    with psycopg.connect(url, autocommit=True, connect_timeout=2) as db:
        row = db.execute("SELECT count(*), extract(epoch FROM min(received_at)) FROM profiles_eventbatch").fetchone()
    assert row is not None
    return int(row[0]), float(row[1]) if row[1] is not None else None


def _monitor(url: str, load: LoadLog, chaos: ChaosLog, stop: threading.Event) -> None:
    """Catch-up after each outage: from the service's return until every body due before it
    was answered 200 and every batch accepted until then is resolved."""
    while not stop.wait(0.25):
        for outage in chaos.outages:
            if not outage.started or outage.caught_up is not None:
                continue
            with load.lock:
                due = [i for i, t in load.due_at.items() if t < outage.started]
                acked = [load.acked_at.get(i) for i in due]
            if any(t is None for t in acked):
                continue
            last_ack = max((t for t in acked if t is not None), default=outage.started)
            try:
                count, oldest = _waiting(url)
            except psycopg.Error:
                continue
            if count == 0 or (oldest is not None and oldest > last_ack):
                outage.caught_up = time.time() - outage.started


def _chaos(t0: float, args: argparse.Namespace, gunicorn: Service, worker: Supervised,
           services: dict[str, ControlledService | None], log: ChaosLog, stop: threading.Event) -> None:  # fmt: skip
    rng = random.Random(args.seed)

    def at(offset: float) -> float:
        return t0 + offset

    def sleep_until(when: float) -> bool:
        while (left := when - time.time()) > 0:
            if stop.wait(min(left, 0.2)):
                return False
        return True

    log.kill_window = (at(10), at(40))
    plan: list[tuple[float, str]] = [(at(20), "celery"), (at(32), "celery")]
    t = at(10)
    while (t := t + rng.uniform(2, 4)) < at(40):
        plan.append((t, "celery-child"))
    t = at(10)
    while (t := t + rng.uniform(5, 8)) < at(40):
        plan.append((t, "gunicorn-worker"))
    for when, what in sorted(plan):
        if not sleep_until(when):
            return
        if what == "celery":
            worker.kill_whole()
        elif what == "celery-child":
            kill_one_child(worker.service.pid, rng.choice)
        else:
            kill_one_child(gunicorn.pid, rng.choice)
        log.kills[what] += 1
    for name, offset in (("redis", 45.0), ("postgres", 95.0)):
        service = services.get(name)
        if service is None or not sleep_until(at(offset)):
            continue
        outage = Outage(service.name, stopped=time.time())
        log.outages.append(outage)
        say(f"stopping {service.name} for {args.outage_seconds:g} s")
        service.stop()
        stop.wait(args.outage_seconds)
        service.start()
        outage.started = time.time()
        say(f"{service.name} is back")


@dataclass(slots=True)
class RunResult:
    load: LoadLog
    chaos: ChaosLog
    drained_seconds: float | None
    checks: dict[str, Any]


def one_run(
    args: argparse.Namespace, work: Workload, url: str, port: int, auth: str, gunicorn: Service, worker: Supervised,
    services: dict[str, ControlledService | None], *, chaos: bool,
) -> RunResult:  # fmt: skip
    stop = threading.Event()
    log = ChaosLog()
    load_log = LoadLog()
    loader = threading.Thread(target=post_at_rate, name="load", daemon=True, kwargs=dict(
        port=port, auth=auth, bodies=work.bodies, rate=args.rate / 100, threads=args.client_threads,
        retry_cap=args.retry_cap, give_up=300, stop=stop, log=load_log))  # fmt: skip
    monitor_stop = threading.Event()
    monitor = threading.Thread(target=_monitor, args=(url, load_log, log, monitor_stop), daemon=True)
    chaos_thread = threading.Thread(target=_chaos, args=(time.time(), args, gunicorn, worker, services, log, stop),
                                    daemon=True)  # fmt: skip
    loader.start()
    monitor.start()
    if chaos:
        chaos_thread.start()
    try:
        loader.join()
        if chaos:
            chaos_thread.join()
    except KeyboardInterrupt:
        stop.set()
        raise
    load_done = time.time()
    drained: float | None = None
    while time.time() - load_done < args.drain_timeout:
        with contextlib.suppress(psycopg.Error):
            if _waiting(url)[0] == 0:
                drained = time.time() - load_done
                break
        time.sleep(0.5)
    time.sleep(0.5)
    monitor_stop.set()
    monitor.join()
    return RunResult(load_log, log, drained, verify(url, work, load_log))


def verify(url: str, work: Workload, load: LoadLog) -> dict[str, Any]:
    """What the run must show: nothing lost or duplicated, every event on a profile, no rule
    broken, and the precision and recall of the profiles."""
    expected = {work.message_ids[j] for i in load.acked_at for j in _events_of(work, i)}
    with psycopg.connect(url) as db:
        counts = Counter(mid for (mid,) in db.execute("SELECT message_id FROM profiles_event"))
        unresolved = db.execute("SELECT count(*) FROM profiles_event WHERE profile_id IS NULL").fetchone()
        rules = {
            "user_id over 1": "SELECT count(*) FROM (SELECT profile_id FROM profiles_identity WHERE kind = 'user_id' "
            "GROUP BY profile_id HAVING count(*) > 1) x",
            "email over 5": "SELECT count(*) FROM (SELECT profile_id FROM profiles_identity WHERE kind = 'email' "
            "GROUP BY profile_id HAVING count(*) > 5) x",
            "over 1,000 identifiers": "SELECT count(*) FROM (SELECT profile_id FROM profiles_identity "
            "GROUP BY profile_id HAVING count(*) > 1000) x",
            "over 100 merges": "SELECT count(*) FROM profiles_profile WHERE merge_count > 100",
        }
        broken = {name: int(db.execute(sql).fetchone()[0]) for name, sql in rules.items()}  # type: ignore[index]
        profiles, _ = read_profiles(db, len(work.truth))
    ours = score(profiles, work.truth, linkable_components(work.truth, work.ids))
    retried = {a.body for a in load.answers if a.kind != "ok"}
    retried_ids = {work.message_ids[j] for i in retried for j in _events_of(work, i)}
    return {
        "events_sent": len(work.message_ids), "events_acked": len(expected),
        "lost": sum(1 for mid in expected if counts[mid] == 0),
        "duplicated": sum(1 for n in counts.values() if n > 1),
        "not_sent_but_stored": sum(1 for mid in counts if mid not in expected),
        "unresolved": int(unresolved[0]) if unresolved else None,
        "retried_events": len(retried_ids), "retried_events_in_log_once": sum(1 for m in retried_ids if counts[m] == 1),
        "bodies_given_up": len(load.gave_up), "rules_broken": broken,
        "precision": ours.precision, "recall": ours.recall, "profiles": ours.profiles,
    }  # fmt: skip


def _events_of(work: Workload, body: int) -> range:
    offsets = _OFFSETS.get(id(work))
    if offsets is None:
        offsets = _OFFSETS[id(work)] = [0, *itertools.accumulate(work.counts)]
    return range(offsets[body], offsets[body + 1])


_OFFSETS: dict[int, list[int]] = {}


def latency(load: LoadLog, window: tuple[float, float] | None = None) -> dict[str, float | int]:
    answers = [a for a in load.answers if window is None or window[0] <= a.sent <= window[1]]
    ok = sorted(a.seconds for a in answers if a.kind == "ok")
    return {"requests": len(answers), "ok": len(ok),
            "p50_ms": round(percentile(ok, 50) * 1000, 1) if ok else float("nan"),
            "p99_ms": round(percentile(ok, 99) * 1000, 1) if ok else float("nan"),
            "kinds": dict(Counter(a.kind for a in answers))}  # fmt: skip


def report(calm: RunResult, chaos: RunResult) -> dict[str, Any]:
    calm_lat = latency(calm.load)
    outages = {o.name: o for o in chaos.chaos.outages}
    figures: dict[str, Any] = {
        "calm": {"latency": calm_lat, "checks": calm.checks, "drain_s": calm.drained_seconds},
        "chaos": {"latency": latency(chaos.load), "checks": chaos.checks, "drain_s": chaos.drained_seconds,
                  "kills": dict(chaos.chaos.kills)},
    }  # fmt: skip
    for name, outage in outages.items():
        window = (outage.stopped, outage.started)
        during = [a for a in chaos.load.answers if window[0] <= a.sent <= window[1]]
        figures["chaos"][name] = {
            "latency": latency(chaos.load, window),
            "other_answers": [f"{a.detail}" for a in during if a.kind == "other"][:10],
            "other_count": sum(1 for a in during if a.kind == "other"),
            "catch_up_s": round(outage.caught_up, 1) if outage.caught_up is not None else None,
        }
    kill_window = chaos.chaos.kill_window
    during_kills = [a for a in chaos.load.answers if kill_window[0] <= a.sent <= kill_window[1]]
    figures["chaos"]["kills_answers"] = dict(Counter(a.kind for a in during_kills))
    return figures


def bars(figures: dict[str, Any]) -> dict[str, bool]:
    chaos, calm = figures["chaos"], figures["calm"]
    checks = chaos["checks"]
    redis = chaos.get("Redis", {})
    postgres = chaos.get("PostgreSQL", {})
    calm_p99 = calm["latency"]["p99_ms"]
    ratio = redis["latency"]["p99_ms"] / calm_p99 if redis and calm_p99 else float("inf")
    figures["chaos"]["redis_p99_ratio"] = round(ratio, 2)
    return {
        "0 lost, 0 duplicated": checks["lost"] == 0 and checks["duplicated"] == 0 and checks["bodies_given_up"] == 0,
        "every event on a profile, no rule broken": checks["unresolved"] == 0
        and not any(checks["rules_broken"].values()),
        "retried events in the log once": checks["retried_events"] == checks["retried_events_in_log_once"],
        "precision and recall as in the calm run": checks["precision"] == calm["checks"]["precision"]
        and abs(checks["recall"] - calm["checks"]["recall"]) <= 0.001,
        "/v1/batch p99 in the Redis outage <= 2 x calm": bool(redis) and ratio <= 2,
        "0 answers but 200 or JSON 503 in the PostgreSQL outage": bool(postgres) and postgres["other_count"] == 0,
        "catch-up under 60 s after each outage": all(
            chaos[n]["catch_up_s"] is not None and chaos[n]["catch_up_s"] < 60 for n in ("Redis", "PostgreSQL")
            if n in chaos
        ),
    }  # fmt: skip


def print_report(figures: dict[str, Any], met: dict[str, bool]) -> None:
    calm, chaos = figures["calm"], figures["chaos"]
    out = sys.stdout
    out.write("\n                                     calm run        chaos run\n")
    for label, key in (("/v1/batch p50 ms (whole run)", "p50_ms"), ("/v1/batch p99 ms (whole run)", "p99_ms")):
        out.write(f"{label:36} {calm['latency'][key]:>9}        {chaos['latency'][key]:>9}\n")
    for key in ("events_sent", "events_acked", "lost", "duplicated", "unresolved", "retried_events",
                "retried_events_in_log_once", "precision", "recall", "profiles"):  # fmt: skip
        a, b = calm["checks"][key], chaos["checks"][key]
        fmt = (lambda v: f"{v:.6f}") if isinstance(a, float) else (lambda v: f"{v:,}")
        out.write(f"{key:36} {fmt(a):>9}        {fmt(b):>9}\n")
    out.write(f"{'rules broken':36} {sum(calm['checks']['rules_broken'].values()):>9}"
              f"        {sum(chaos['checks']['rules_broken'].values()):>9}\n")  # fmt: skip
    out.write(f"{'drain after the load, s':36} {calm['drain_s'] or float('nan'):>9.1f}"
              f"        {chaos['drain_s'] or float('nan'):>9.1f}\n")  # fmt: skip
    out.write(f"\nkills: {chaos['kills']}; answers while killing: {chaos['kills_answers']}\n")
    for name in ("Redis", "PostgreSQL"):
        if name in chaos:
            o = chaos[name]
            out.write(f"{name} outage: /v1/batch p50 {o['latency']['p50_ms']} ms, p99 {o['latency']['p99_ms']} ms; "
                      f"answers {o['latency']['kinds']}; not 200 nor JSON 503: {o['other_count']}; "
                      f"caught up {o['catch_up_s']} s after it came back\n")  # fmt: skip
            for detail in o["other_answers"]:
                out.write(f"    {detail}\n")
    out.write(f"Redis outage p99 / calm p99: {chaos.get('redis_p99_ratio')}\n\n")
    for name, ok in met.items():
        out.write(f"  {'met' if ok else 'NOT met':8} {name}\n")
    out.flush()


def _service(
    args: argparse.Namespace, made: list[ControlledService], name: str, given: str | None, option: str,
    private: Callable[[], PrivatePostgres | PrivateRedis],
) -> tuple[ControlledService | None, str]:  # fmt: skip
    """The service to run against and its URL: the given one (stopped and started by the
    given commands, or never), else a private one made now (and put in `made`)."""
    if given:
        stop, start = getattr(args, f"{option}_stop_command"), getattr(args, f"{option}_start_command")
        commands = CommandService(name, stop, start)
        return (commands if commands.controllable else None), given
    say(f"making a private {name} for this run")
    service = private()
    made.append(service)
    return service, service.url


def run(args: argparse.Namespace) -> int:
    if args.seconds < 130:
        raise SetupError("--seconds must be at least 130: the outages happen at 45 s and 95 s")
    var_dir = Path(tempfile.mkdtemp(prefix="cdp-chaos-"))
    made: list[ControlledService] = []
    procs: list[Any] = []
    try:
        pg, url = _service(args, made, "PostgreSQL", args.database_url, "postgres",
                           lambda: PrivatePostgres(args.postgres_port))  # fmt: skip
        redis, broker = _service(args, made, "Redis", args.broker_url and args.broker_url.rstrip("/"), "redis",
                                 lambda: PrivateRedis(args.redis_port))  # fmt: skip
        people = round(args.rate * args.seconds / EVENTS_PER_PERSON)
        # Members log in on a family device this many events after its owner: more than an
        # outage (and the client's retries) can reorder, so arrival order does not decide it.
        gap = int(args.rate * (args.outage_seconds + 25))
        pop = PopulationBuilder(seed=args.seed, people=people, claimants=round(5000 * people / 100_000),
                                families=max(1, people // 100), family_gap=gap).build()  # fmt: skip
        work = build_workload(pop, batch_size=100, shuffle_window=100, seed=args.seed)
        say(f"{people:,} people, {len(work.truth):,} events in {len(work.bodies):,} bodies at {args.rate:g} events/s")

        recreate_database(url, args.allow_drop or not args.database_url)
        env = dict(os.environ)
        env.update(DJANGO_SETTINGS_MODULE="cdp.settings.production", DATABASE_URL=url,
                   CELERY_BROKER_URL=f"{broker}/0", REDIS_URL=f"{broker}/1", SECRET_KEY=secrets.token_urlsafe(50),
                   ALLOWED_HOSTS="127.0.0.1,localhost", SESSION_COOKIE_SECURE="false", CDP_VAR_DIR=str(var_dir),
                   LOG_LEVEL="WARNING", PYTHONUNBUFFERED="1")  # fmt: skip
        env.pop("CDP_DB_ROLE", None)
        _manage(env, "migrate", "--noinput")
        key = _manage(env, "create_source", "chaos-bench").strip().splitlines()[-1].strip()
        auth = "Basic " + base64.b64encode(f"{key}:".encode()).decode()
        port = _free_port()
        gunicorn = Service("gunicorn", [PYTHON, "-m", "gunicorn", "cdp.wsgi", "--bind", f"127.0.0.1:{port}",
                                        "--workers", "2", "--worker-class", "gthread", "--threads", "2",
                                        "--log-level", "warning"], env, var_dir / "gunicorn.log")  # fmt: skip
        procs.append(gunicorn)
        n = iter(range(1000))
        worker = Supervised(lambda: Service(
            "celery", [PYTHON, "-m", "celery", "-A", "cdp", "worker", "--pool", "prefork", "--concurrency", "2",
                       "--loglevel", "INFO", "--hostname", f"chaos-{next(n)}@%h", "--without-gossip",
                       "--without-mingle", "--without-heartbeat"], env, var_dir / "celery.log"))  # fmt: skip
        procs.append(worker)
        beat = [PYTHON, "-m", "celery", "-A", "cdp", "beat", "--loglevel", "INFO", "--schedule",
                str(var_dir / "beat-schedule")]  # fmt: skip
        procs.append(Service("beat", beat, env, var_dir / "beat.log"))
        _wait_healthy(port, gunicorn)
        services = {"redis": redis, "postgres": pg}

        say("calm run (the reference)")
        calm = one_run(args, work, url, port, auth, gunicorn, worker, services, chaos=False)
        _truncate(url)
        say("chaos run")
        chaos = one_run(args, work, url, port, auth, gunicorn, worker, services, chaos=True)
        figures = report(calm, chaos)
        figures["setup"] = {
            "rate": args.rate, "seconds": args.seconds, "outage_seconds": args.outage_seconds, "people": people,
            "events": len(work.truth), "worker_restarts": worker.restarts,
        }  # fmt: skip
        met = bars(figures)
        figures["bars"] = met
        print_report(figures, met)
        if args.json:
            args.json.write_text(json.dumps(figures, indent=2, default=str) + "\n")
        return 0 if all(met.values()) else 1
    except KeyboardInterrupt:
        say("interrupted; stopping what was started")
        return 130
    finally:
        for proc in reversed(procs):
            with contextlib.suppress(Exception):
                proc.stop()
        for service in reversed(made):
            service.close()
        if args.keep_logs:
            say(f"logs kept in {var_dir}")
        else:
            import shutil

            shutil.rmtree(var_dir, ignore_errors=True)


def main(argv: Sequence[str] | None = None) -> int:
    return bench_main(run, build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
