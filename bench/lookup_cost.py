#!/usr/bin/env python3
"""The cost of one Profile API `/traits` lookup in process: the WSGI application called
directly (Django's handler, the middleware, the view; no socket, no gunicorn), on the data
`bench/lookup.py` leaves in its database. Not a test and not a timed bar: a tool for before
and after, by CPU time or, immune to whatever else runs on the machine, by instructions.

    .venv/bin/python bench/lookup.py --seconds 2 --pages 2     # fills cdp_bench_lookup, once
    .venv/bin/python bench/lookup_cost.py                      # CPU ms per lookup (2,000 lookups)
    .venv/bin/python bench/lookup_cost.py --profile            # and where it goes (cProfile, CPU time)
    # instructions per lookup: the difference of two runs over the difference of their counts
    valgrind --tool=callgrind --callgrind-out-file=/dev/null .venv/bin/python bench/lookup_cost.py --lookups 300
    valgrind --tool=callgrind --callgrind-out-file=/dev/null .venv/bin/python bench/lookup_cost.py --lookups 0

Both runs warm up with the same 300 lookups first (imports, the database connection, psycopg's
prepared statement), so what differs is the lookups alone. It creates an access token in the
database (named `lookup_cost`); the rate limit is lifted for the run.
"""

from __future__ import annotations

import argparse
import base64
import io
import os
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PATH = "/v1/spaces/default/collections/users/profiles/user_id:u{}/traits"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", default="postgres://postgres@127.0.0.1:5432/cdp_bench_lookup")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/14")
    parser.add_argument("--profiles", type=int, default=100_000, help="as bench/lookup.py filled")
    parser.add_argument("--lookups", type=int, default=2000)
    parser.add_argument("--profile", action="store_true", help="print cProfile's top functions (CPU time)")
    args = parser.parse_args()
    os.environ.update({"DATABASE_URL": args.database_url, "REDIS_URL": args.redis_url, "LOG_LEVEL": "WARNING",
                       "DJANGO_SETTINGS_MODULE": "cdp.settings", "CDP_API_RATE_LIMIT": "1000000"})  # fmt: skip
    os.environ.setdefault("CDP_VAR_DIR", str(Path("/tmp/cdp-lookup-cost")))

    from cdp.wsgi import application
    from profiles.services.tokens import access_token_create

    auth = "Basic " + base64.b64encode(f"{access_token_create(name='lookup_cost')[1]}:".encode()).decode()
    rng = random.Random(1)
    answers: list[str] = []

    def start_response(status: str, headers: object, exc_info: object = None) -> None:
        answers.append(status)

    def lookup() -> None:
        environ = {
            "REQUEST_METHOD": "GET", "PATH_INFO": PATH.format(rng.randint(1, args.profiles)), "QUERY_STRING": "",
            "SERVER_NAME": "127.0.0.1", "SERVER_PORT": "8000", "HTTP_HOST": "127.0.0.1:8000",
            "HTTP_AUTHORIZATION": auth, "wsgi.input": io.BytesIO(b""), "wsgi.url_scheme": "http",
            "SERVER_PROTOCOL": "HTTP/1.1", "wsgi.errors": sys.stderr, "REMOTE_ADDR": "127.0.0.1",
        }  # fmt: skip
        b"".join(application(environ, start_response))

    for _ in range(300):
        lookup()
    if answers[-1] != "200 OK":
        print(f"lookups answer {answers[-1]}: fill the database with bench/lookup.py first", file=sys.stderr)
        return 2
    answers.clear()
    profiler = None
    if args.profile:
        import cProfile

        profiler = cProfile.Profile(time.process_time)
        profiler.enable()
    began = time.process_time()
    for _ in range(args.lookups):
        lookup()
    used = time.process_time() - began
    if profiler is not None:
        import pstats

        profiler.disable()
        pstats.Stats(profiler).sort_stats("cumulative").print_stats(40)
    if args.lookups:
        assert answers.count("200 OK") == args.lookups, set(answers)
        print(f"{args.lookups:,} lookups: {used * 1000 / args.lookups:.3f} ms of CPU each (this process)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
