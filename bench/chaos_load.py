"""The chaos benchmark's client: posts `/v1/batch` bodies at a fixed rate, as an SDK would,
retrying every body until it is answered 200 (after `Retry-After` when the answer has one,
capped; at once after a dropped connection), and records every answer it saw."""

from __future__ import annotations

import http.client
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import orjson

OK_BODY = b'{"success":true}'
# A kept-alive connection idle this long is reopened before it is used: gunicorn closes idle
# ones after 2 s, and a request sent on one it closed fails before reaching it (a real HTTP
# client's pool does the same).
IDLE_CLOSE_S = 1.5


@dataclass(frozen=True, slots=True)
class Answer:
    body: int
    sent: float  # wall-clock seconds
    seconds: float  # until the answer (or the failure)
    kind: str  # ok | json_503 (Segment's shape, with Retry-After) | other
    detail: str = ""


@dataclass(slots=True)
class LoadLog:
    answers: list[Answer] = field(default_factory=list)
    acked_at: dict[int, float] = field(default_factory=dict)  # body -> wall clock of its 200
    due_at: dict[int, float] = field(default_factory=dict)  # body -> wall clock it was first due
    gave_up: list[int] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def _classify(status: int, headers: http.client.HTTPMessage, payload: bytes) -> tuple[str, float | None]:
    if status == 200 and payload == OK_BODY:
        return "ok", None
    retry_after = headers.get("Retry-After")
    if status == 503 and retry_after and headers.get("Content-Type", "").startswith("application/json"):
        try:
            body = orjson.loads(payload)
        except orjson.JSONDecodeError:
            body = None
        if isinstance(body, dict) and set(body) == {"code", "message"}:
            return "json_503", float(retry_after)
    return "other", float(retry_after) if retry_after and retry_after.isdigit() else None


def post_at_rate(
    *, port: int, auth: str, bodies: Sequence[bytes], rate: float, threads: int, retry_cap: float, give_up: float,
    stop: threading.Event, log: LoadLog,
) -> None:  # fmt: skip
    """Post body i when it is due (start + i / rate), each retried until 200 or `give_up`
    seconds after it was due. Every answer goes to `log` as it comes (others may watch it)."""
    start = time.time()
    next_index = iter(range(len(bodies))).__next__
    take = threading.Lock()
    headers = {"Authorization": auth, "Content-Type": "application/json", "User-Agent": "cdp-chaos/1"}

    def worker() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        last_used = time.time()
        answers: list[Answer] = []
        try:
            while not stop.is_set():
                with take:
                    try:
                        i = next_index()
                    except StopIteration:
                        return
                due = start + i / rate
                with log.lock:
                    log.due_at[i] = due
                while (wait := due - time.time()) > 0 and not stop.is_set():
                    time.sleep(min(wait, 0.5))
                while not stop.is_set():
                    sent = time.time()
                    if sent - last_used > IDLE_CLOSE_S:
                        conn.close()  # the server has closed it (gunicorn's keep-alive is 2 s): a new one
                    last_used = sent
                    try:
                        conn.request("POST", "/v1/batch", body=bodies[i], headers=headers)
                        response = conn.getresponse()
                        payload = response.read()
                        kind, retry_after = _classify(response.status, response.headers, payload)
                        detail = "" if kind == "ok" else f"{response.status} {payload[:120]!r}"
                    except (OSError, http.client.HTTPException) as exc:
                        conn.close()
                        kind, retry_after, detail = "other", 0.2, f"{type(exc).__name__}: {exc}"
                    answers.append(Answer(i, sent, time.time() - sent, kind, detail))
                    if kind == "ok":
                        with log.lock:
                            log.acked_at[i] = time.time()
                        break
                    if time.time() - due > give_up:
                        with log.lock:
                            log.gave_up.append(i)
                        break
                    time.sleep(min(retry_after if retry_after is not None else 1.0, retry_cap))
        finally:
            conn.close()
            with log.lock:
                log.answers.extend(answers)

    pool = [threading.Thread(target=worker, name=f"chaos-load-{n}", daemon=True) for n in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        while thread.is_alive():
            thread.join(0.5)
    with log.lock:
        log.answers.sort(key=lambda a: a.sent)
