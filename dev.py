#!/usr/bin/env python3
"""The two commands a newcomer needs, on any machine with Python 3.11+:

    python3 dev.py start    # set up, then run the CDP on its embedded default
    python3 dev.py test     # set up, then run the test suite

Setting up means a virtualenv in `.venv` with `requirements.txt` installed (again only
when the file changes). `start` migrates, creates a first source and an admin login,
prints them with the URL, and serves with gunicorn plus a Celery worker with beat, until
Ctrl-C. With nothing set it uses SQLite and a filesystem broker under `var/`; set
DATABASE_URL, CELERY_BROKER_URL and REDIS_URL to use PostgreSQL and Redis instead.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import signal
import subprocess
import sys
import time
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = Path(os.environ.get("CDP_VENV") or ROOT / ".venv")
REQUIREMENTS = ROOT / "requirements.txt"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PYTHON = BIN / ("python.exe" if os.name == "nt" else "python")


# gthread workers with 4 threads, as the image runs them (docs/architecture.md, "gunicorn runs
# gthread workers"): kept-alive connections, measured the cheapest per Profile API lookup.
GUNICORN_THREADS = ["--worker-class", "gthread", "--threads", "4"]


def say(message: str) -> None:
    print(f"[cdp] {message}", flush=True)


def ensure_venv() -> None:
    """Create `.venv` and install the pinned requirements when they changed, then re-run
    this script inside it."""
    if not PYTHON.exists():
        say(f"creating a virtualenv in {VENV}")
        venv.create(VENV, with_pip=True)
    digest = hashlib.sha256(REQUIREMENTS.read_bytes()).hexdigest()
    stamp = VENV / ".requirements.sha256"
    if not stamp.exists() or stamp.read_text() != digest:
        say("installing requirements.txt (first run only; about a minute)")
        pip = [str(PYTHON), "-m", "pip", "--disable-pip-version-check"]
        subprocess.run([*pip, "install", "-q", "--upgrade", "pip"], check=True)
        subprocess.run([*pip, "install", "-q", "-r", str(REQUIREMENTS)], check=True)
        stamp.write_text(digest)
    if Path(sys.prefix).resolve() != VENV.resolve():
        os.execv(str(PYTHON), [str(PYTHON), str(Path(__file__).resolve()), *sys.argv[1:]])


def manage(*args: str, capture: bool = False) -> str:
    result = subprocess.run(
        [str(PYTHON), str(ROOT / "manage.py"), *args], check=True, cwd=ROOT, text=True,
        stdout=subprocess.PIPE if capture else None,
    )  # fmt: skip
    return result.stdout or ""


def start(args: argparse.Namespace) -> int:
    url = f"http://{'localhost' if args.host in ('127.0.0.1', '0.0.0.0') else args.host}:{args.port}"
    os.environ.setdefault("CDP_PUBLIC_URL", url)
    eager = args.eager or os.name == "nt"  # no prefork worker and no gunicorn on Windows
    if eager:
        os.environ["CDP_CELERY_EAGER"] = "1"
    manage("migrate", "--noinput", "-v", "0")
    manage("collectstatic", "--noinput", "-v", "0")
    facts = dict(line.split("=", 1) for line in manage("ensure_first_run", capture=True).splitlines() if "=" in line)
    database = os.environ.get("DATABASE_URL") or "SQLite (var/cdp.sqlite3)"
    broker = "eager (no worker)" if eager else os.environ.get("CELERY_BROKER_URL") or "embedded (var/broker)"
    password = facts.get("admin_password", "(set on first run; change it with: python manage.py changepassword)")
    print(
        f"""
  CDP is starting at {url}

  Admin      {url}/admin/
             user {facts["admin_user"]}   password {password}
  Source     {facts["source"]}
  Write key  {facts["write_key"]}
  Database   {database}
  Broker     {broker}

  Send an event:
    curl -u {facts["write_key"]}: -H 'Content-Type: application/json' \\
         -d '{{"userId":"u1","event":"Signed Up"}}' {url}/v1/track

  Ctrl-C stops it.
""",
        flush=True,
    )
    children: list[subprocess.Popen[bytes]] = []
    if not eager:
        children.append(subprocess.Popen(
            [str(PYTHON), "-m", "celery", "-A", "cdp", "worker", "-B", "--pool", "solo", "--loglevel", "INFO"],
            cwd=ROOT,
        ))  # fmt: skip
    if os.name == "nt":
        web = [str(PYTHON), str(ROOT / "manage.py"), "runserver", "--noreload", f"{args.host}:{args.port}"]
    else:
        # gunicorn.conf.py: an access log that never shows a secret (write keys, webhook secrets).
        web = [str(PYTHON), "-m", "gunicorn", "cdp.wsgi", "--config", str(ROOT / "gunicorn.conf.py"),
               "--bind", f"{args.host}:{args.port}", "--workers", str(args.workers),
               *GUNICORN_THREADS, "--access-logfile", "-"]  # fmt: skip
    children.append(subprocess.Popen(web, cwd=ROOT))

    def stop(*_: object) -> None:
        for child in children:
            if child.poll() is None:
                child.terminate()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        while all(child.poll() is None for child in children):
            time.sleep(0.5)
    finally:
        stop()
        for child in children:
            try:
                child.wait(timeout=20)
            except subprocess.TimeoutExpired:
                child.kill()
    return 0


def test(args: argparse.Namespace, rest: list[str]) -> int:
    say(f"database: {os.environ.get('DATABASE_URL') or 'SQLite'}; broker: "
        f"{os.environ.get('CELERY_BROKER_URL') or 'embedded'}")  # fmt: skip
    return subprocess.run([str(PYTHON), "-m", "pytest", *rest], cwd=ROOT).returncode


def main() -> int:
    if sys.version_info < (3, 11):  # noqa: UP036 - this file must also run, and explain, on an old Python
        sys.exit("Python 3.11 or newer is needed; this is " + sys.version.split()[0])
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p_start = sub.add_parser("start", help="run the CDP")
    p_start.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"))
    p_start.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))
    p_start.add_argument("--workers", type=int, default=2, help="gunicorn workers")
    p_start.add_argument("--eager", action="store_true", help="run tasks inline instead of in a Celery worker")
    sub.add_parser("test", help="run the test suite (extra arguments go to pytest)")
    args, rest = parser.parse_known_args()
    ensure_venv()
    os.chdir(ROOT)
    if args.command == "start":
        return start(args)
    return test(args, rest)


if __name__ == "__main__":
    sys.exit(main())
