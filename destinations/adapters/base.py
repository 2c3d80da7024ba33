"""What every adapter shares: the items it gets, the outcomes it gives, and HTTP with
timeouts, one kept-alive session per destination, trimmed records and Segment's split of
errors into retried (429, 5xx, timeouts, connection errors) and discarded (other 4xx)."""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any

import orjson
import requests
from django.utils import timezone

# Segment's webhook destination waits 5 s; every adapter does.
TIMEOUT_SECONDS = 5.0
# What a delivery keeps of its last request and response.
TRIM = 2000
USER_AGENT = "Segment.io/1.0"

DELIVERED, RETRY, DISCARDED, FILTERED = "delivered", "retry", "discarded", "filtered"
TRANSIENT = (requests.Timeout, requests.ConnectionError)


@dataclass(frozen=True, slots=True)
class Item:
    id: int
    kind: str
    subject: str
    message: Mapping[str, Any]


@dataclass(slots=True)
class Outcome:
    status: str  # delivered | retry | discarded | filtered
    reason: str = ""
    status_code: int | None = None
    request: str = ""
    response: str = ""
    retry_after: float | None = None
    notes: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class Answer:
    """One HTTP exchange as an adapter judges it."""

    status_code: int | None
    body: str
    headers: Mapping[str, str]
    error: str = ""  # a timeout or connection error

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300

    @property
    def transient(self) -> bool:
        return self.status_code is None or self.status_code == 429 or self.status_code >= 500

    def json(self) -> Any:
        try:
            return orjson.loads(self.body)
        except orjson.JSONDecodeError:
            return None

    def retry_after(self) -> float | None:
        return retry_after_seconds(self.headers.get("Retry-After"))

    def text(self) -> str:
        return trim(self.error if self.status_code is None else f"{self.status_code} {self.body}")


def retry_after_seconds(raw: str | None) -> float | None:
    """`Retry-After` in seconds: a number, or an HTTP date."""
    if not raw:
        return None
    try:
        return max(0.0, float(raw))
    except ValueError:
        pass
    try:
        return max(0.0, (parsedate_to_datetime(raw) - timezone.now()).total_seconds())
    except (TypeError, ValueError):
        return None


def trim(text: str | bytes, limit: int = TRIM) -> str:
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return text if len(text) <= limit else text[: limit - 12] + "… (trimmed)"


_sessions = threading.local()


def session_for(destination_id: int) -> requests.Session:
    """A kept-alive session per destination and thread: no new TLS handshake per message."""
    pool: dict[int, requests.Session] = getattr(_sessions, "pool", None) or {}
    _sessions.pool = pool
    if destination_id not in pool:
        s = requests.Session()
        s.headers["User-Agent"] = USER_AGENT
        pool[destination_id] = s
    return pool[destination_id]


def http(
    session: requests.Session,
    method: str,
    url: str,
    *,
    body: bytes | None = None,
    headers: Mapping[str, str] | None = None,
    auth: tuple[str, str] | None = None,
    timeout: float = TIMEOUT_SECONDS,
) -> Answer:
    """One request, never raising for the network: a timeout or refused connection is an
    `Answer` without status (retried)."""
    try:
        r = session.request(method, url, data=body, headers={"Content-Type": "application/json", **(headers or {})},
                            auth=auth, timeout=timeout, allow_redirects=False)  # fmt: skip
    except requests.Timeout:
        return Answer(None, "", {}, f"timeout after {timeout:g} s")
    except requests.ConnectionError as exc:
        return Answer(None, "", {}, f"connection error: {str(exc)[:300]}")
    # Not `r.text`: without a charset in the answer, requests guesses the encoding from the
    # bytes (charset detection, about a millisecond a response).
    return Answer(r.status_code, r.content.decode("utf-8", "replace"), r.headers)


def record(method: str, url: str, body: bytes | str | None) -> str:
    """A request as a delivery keeps it: method, URL, body (trimmed); never credentials."""
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else (body or "")
    return trim(f"{method} {url}\n{text}")


def judged(answer: Answer, request: str, *, what: str) -> Outcome:
    """An answer as an outcome: 2xx delivered, 429/5xx/network retried, other codes
    discarded with the response."""
    if answer.ok:
        return Outcome(DELIVERED, status_code=answer.status_code, request=request, response=answer.text())
    status = RETRY if answer.transient else DISCARDED
    reason = answer.error or f"{what} answered {answer.status_code}"
    return Outcome(status, reason, answer.status_code, request, answer.text(), answer.retry_after())


class Adapter:
    """Sends `items` (at most one per person, oldest first) for one destination. Returns an
    outcome per item it tried; after a transient failure it stops, and the items it did not
    try stay pending. `state` is the destination's kept state, which it may update."""

    kind = ""
    timeout = TIMEOUT_SECONDS

    def __init__(
        self, *, destination_id: int, settings: Mapping[str, Any], state: dict[str, Any], budget: float = 30.0
    ) -> None:
        # Past this monotonic time an adapter that sends item by item stops (the rest stay
        # pending, untried): a slow receiver must not keep a batch past the task's time limit,
        # which would send its delivered items again.
        self.deadline = time.monotonic() + budget
        self.destination_id = destination_id
        self.settings = settings
        self.state = state
        self.session = session_for(destination_id)

    def send(self, items: Sequence[Item]) -> dict[int, Outcome]:
        raise NotImplementedError

    @staticmethod
    def check_settings(settings: Mapping[str, Any]) -> dict[str, Any]:
        """The settings, checked and normalised; raises `SettingsError` naming the field."""
        raise NotImplementedError

    def test_message(self) -> Item | None:
        """What "Send a test message" sends; None: the adapter makes its own check."""
        return None


class SettingsError(ValueError):
    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path = path
        self.message = message


def dumps(value: Any) -> bytes:
    return orjson.dumps(value)
