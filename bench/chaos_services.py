"""What `bench/chaos.py` stops and starts: a private PostgreSQL cluster and a private Redis on
spare ports, made for the run and put away after it, so an outage phase never touches the
machine's own services (other work uses them meanwhile: a test suite, another benchmark).
`--database-url`/`--broker-url` point the run at given services instead, with
`--{postgres,redis}-{stop,start}-command` for their outage phases.

Also the processes it kills: a Celery worker restarted by a supervisor thread when it dies
whole (as systemd or compose's `restart:` would), and helpers to find a process's children.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shlex
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from bench.ingest import Service, SetupError, say


def _pg_bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if found:
        return found[-1]
    path = shutil.which(name)
    if path is None:
        raise SetupError(f"{name} not found (install PostgreSQL's server package)")
    return path


def _as_postgres(argv: list[str]) -> list[str]:
    """initdb and postgres refuse to run as root: run them as the `postgres` user then."""
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *argv]
    return argv


class ControlledService:
    """A service the run can stop and start: `stop()` then `start()` is an outage."""

    name = "service"

    def stop(self) -> None:
        raise NotImplementedError

    def start(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        """Put away what was made for the run."""


class PrivatePostgres(ControlledService):
    """A throwaway cluster in a temporary directory, on 127.0.0.1:`port`, trust auth."""

    name = "PostgreSQL"

    def __init__(self, port: int) -> None:
        self.port = port
        self.dir = Path(tempfile.mkdtemp(prefix="cdp-chaos-pg-"))
        self.data = self.dir / "data"
        self.log = self.dir / "postgres.log"
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres", "postgres")
        subprocess.run(
            _as_postgres([_pg_bin("initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8",
                          "--no-sync"]),
            check=True, capture_output=True,
        )  # fmt: skip
        self.start()

    def _ctl(self, *args: str) -> None:
        options = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c max_connections=100"
        result = subprocess.run(
            _as_postgres([_pg_bin("pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-o", options, "-w", *args]),
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        if result.returncode != 0:
            raise SetupError(f"pg_ctl {' '.join(args)} failed: {result.stdout}{result.stderr}")

    @property
    def url(self) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/cdp_bench_chaos"

    def stop(self) -> None:
        self._ctl("stop", "-m", "fast")  # as an operator's restart, or a crash: every client cut off

    def start(self) -> None:
        self._ctl("start")

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._ctl("stop", "-m", "immediate")
        shutil.rmtree(self.dir, ignore_errors=True)


class PrivateRedis(ControlledService):
    """A Redis on 127.0.0.1:`port`, persisted as docker-compose's is (append-only file), so a
    restart keeps the queued tasks, as in production."""

    name = "Redis"

    def __init__(self, port: int) -> None:
        self.port = port
        self.dir = Path(tempfile.mkdtemp(prefix="cdp-chaos-redis-"))
        self.start()

    def start(self) -> None:
        subprocess.run(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "yes",
             "--dir", str(self.dir), "--daemonize", "yes", "--pidfile", str(self.dir / "redis.pid"),
             "--logfile", str(self.dir / "redis.log")],
            check=True, capture_output=True,
        )  # fmt: skip
        for _ in range(100):
            if subprocess.run(["redis-cli", "-p", str(self.port), "ping"], capture_output=True).returncode == 0:
                return
            time.sleep(0.05)
        raise SetupError("the private Redis did not start")

    def stop(self) -> None:
        subprocess.run(["redis-cli", "-p", str(self.port), "shutdown"], capture_output=True)
        for _ in range(100):
            if subprocess.run(["redis-cli", "-p", str(self.port), "ping"], capture_output=True).returncode != 0:
                return
            time.sleep(0.05)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


class CommandService(ControlledService):
    """Given services: stopped and started by the commands the operator gave (or not at all)."""

    def __init__(self, name: str, stop: str | None, start: str | None) -> None:
        self.name, self._stop, self._start = name, stop, start

    @property
    def controllable(self) -> bool:
        return bool(self._stop and self._start)

    def stop(self) -> None:
        if self._stop:
            subprocess.run(shlex.split(self._stop), check=True, timeout=120)

    def start(self) -> None:
        if self._start:
            subprocess.run(shlex.split(self._start), check=True, timeout=120)


def children(pid: int) -> list[int]:
    """Direct children of `pid` (from /proc)."""
    found = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            with contextlib.suppress(OSError, ValueError, IndexError):
                stat = Path(f"/proc/{entry.name}/stat").read_text()
                if int(stat[stat.rindex(")") + 2 :].split()[1]) == pid:
                    found.append(int(entry.name))
    return found


class Supervised:
    """A Service restarted whenever it dies (checked every 0.2 s), as a supervisor would."""

    def __init__(self, make: Callable[[], Service]) -> None:
        self._make = make
        self.service = make()
        self.restarts = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="supervisor", daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        while not self._stop.wait(0.2):
            if not self.service.alive():
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(self.service.pid, signal.SIGKILL)  # its pool children too
                self.service = self._make()
                self.restarts += 1

    def kill_whole(self) -> None:
        """SIGKILL the worker and its pool at once (a host or container crash)."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.service.pid, signal.SIGKILL)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.service.stop()


def kill_one_child(parent_pid: int, rng_choice: Callable[[Sequence[int]], int]) -> int | None:
    """SIGKILL one child of `parent_pid` (a Celery pool process, a gunicorn worker)."""
    kids = children(parent_pid)
    if not kids:
        return None
    victim = rng_choice(kids)
    with contextlib.suppress(ProcessLookupError):
        os.kill(victim, signal.SIGKILL)
    return victim


__all__ = ["CommandService", "ControlledService", "PrivatePostgres", "PrivateRedis", "Supervised", "children",
           "kill_one_child", "say"]  # fmt: skip
