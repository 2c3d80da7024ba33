"""Stand-in servers for the destinations' tests and benchmark: real HTTP servers on local
threads that follow the providers' documented contracts (esp-contracts §3, §6.2; the
samples in tests/fixtures/destinations/), not mocks of our own code.

- `Sink`: a webhook receiver that records every request.
- `MailjetStandIn`: `/v3/REST/contactmetadata`, `contactslist/{id}/managemanycontacts` and
  `contact/managemanycontacts` as async jobs (Importing, then Completed, or Error with the
  JSON error file), Basic auth, properties that must be defined before use, `addnoforce`
  leaving an unsubscribed contact unsubscribed.
- `MailchimpStandIn`: `PUT /3.0/lists/{id}/members/{md5}` (`status_if_new` needed for a new
  member, the hash checked, merge tags checked), `…/tags`, `/3.0/batches` polled to
  `finished` with a tar.gz of per-operation results.

Each can be told to fail next: `fail(n, status, headers=…, body=…)`, or to hang (timeouts)."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import io
import re
import tarfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return orjson.loads(self.body) if self.body else None


@dataclass
class Failure:
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    hang: float = 0.0


class StandIn:
    """A threaded HTTP server; subclasses answer in `answer`."""

    def __init__(self) -> None:
        self.received: list[Received] = []
        self.failures: list[Failure] = []
        self.always: Failure | None = None
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # one segment per answer: no 40 ms delayed-ACK stall

            def log_message(self, *args: Any) -> None:
                pass

            def _any(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                got = Received(self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, body)
                with outer.lock:
                    outer.received.append(got)
                    fail = outer.failures.pop(0) if outer.failures else outer.always
                if fail is not None:
                    if fail.hang:
                        time.sleep(fail.hang)
                    status, headers, out = fail.status, fail.headers, fail.body
                else:
                    with outer.lock:
                        status, headers, out = outer.answer(got)
                self.send_response(status)
                headers = {"Content-Type": "application/json", **headers}
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    self.wfile.write(out)

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _any

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def fail(self, n: int, status: int, *, headers: dict[str, str] | None = None, body: bytes = b"",
             hang: float = 0.0) -> None:  # fmt: skip
        with self.lock:
            self.failures += [Failure(status, headers or {}, body, hang) for _ in range(n)]

    def requests_to(self, pattern: str) -> list[Received]:
        with self.lock:
            return [r for r in self.received if re.search(pattern, r.path)]

    def answer(self, got: Received) -> tuple[int, dict[str, str], bytes]:
        raise NotImplementedError


class Sink(StandIn):
    def answer(self, got: Received) -> tuple[int, dict[str, str], bytes]:
        return 200, {}, b'{"ok":true}'


def _basic(got: Received) -> tuple[str, str] | None:
    raw = got.headers.get("authorization", "")
    if not raw.startswith("Basic "):
        return None
    user, _, password = base64.b64decode(raw[6:]).decode().partition(":")
    return user, password


def _mj(data: list[Any]) -> bytes:
    return orjson.dumps({"Count": len(data), "Data": data, "Total": len(data)})


class MailjetStandIn(StandIn):
    """Mailjet's contacts API as documented: wrapped answers, async bulk jobs."""

    TYPES = {"str": str, "int": int, "float": (int, float), "bool": bool, "datetime": (str, int)}

    def __init__(self, key: str = "mj-key", secret: str = "mj-secret") -> None:
        self.key, self.secret = key, secret
        self.properties: dict[str, str] = {}  # name → Datatype
        self.contacts: dict[str, dict[str, Any]] = {}  # email → properties
        self.lists: dict[int, dict[str, bool]] = {}  # list → email → subscribed (False: unsubscribed)
        self.jobs: dict[int, dict[str, Any]] = {}
        super().__init__()

    def answer(self, got: Received) -> tuple[int, dict[str, str], bytes]:
        if _basic(got) != (self.key, self.secret):
            return 401, {}, b'{"ErrorMessage":"API key authentication/authorization failure","StatusCode":401}'
        path = got.path.split("?")[0]
        if path == "/v3/REST/contactmetadata" and got.method == "POST":
            body = got.json()
            if body.get("Datatype") not in self.TYPES or body.get("NameSpace") not in ("static", "historic"):
                return 400, {}, b'{"ErrorMessage":"Invalid Datatype or NameSpace","StatusCode":400}'
            if body["Name"] in self.properties:
                return 400, {}, orjson.dumps({"ErrorMessage": f'MJ18 A Contact resource with value "{body["Name"]}" '
                                              'for Name already exists.', "StatusCode": 400})  # fmt: skip
            self.properties[body["Name"]] = body["Datatype"]
            return 201, {}, _mj([{"ID": len(self.properties), **body}])
        m = re.fullmatch(r"/v3/REST/(?:contactslist/(\d+)/|contact/)managemanycontacts(?:/(\d+))?", path)
        if m and got.method == "POST" and not m.group(2):
            return self._job(int(m.group(1)) if m.group(1) else None, got.json())
        if m and got.method == "GET" and m.group(2):
            job = self.jobs.get(int(m.group(2)))
            if job is None:
                return 404, {}, b'{"ErrorMessage":"Object not found","StatusCode":404}'
            job["polls"] += 1
            status = "Importing" if job["polls"] < 2 else job["final"]
            return 200, {}, _mj([{"Count": job["count"], "Error": job["error"] if status != "Importing" else "",
                                  "ErrorFile": job["error_file"] if status != "Importing" else "",
                                  "JobStart": "", "JobEnd": "", "Status": status}])  # fmt: skip
        m = re.fullmatch(r"/v3/DATA/batchjob/(\d+)/JSONError/application:json/LAST", path)
        if m and (job := self.jobs.get(int(m.group(1)))):
            return 200, {}, orjson.dumps(job["errors"])
        return 404, {}, b'{"ErrorMessage":"Object not found","StatusCode":404}'

    def _job(self, list_id: int | None, body: Any) -> tuple[int, dict[str, str], bytes]:
        action = body.get("Action")
        if list_id is not None and action not in ("addforce", "addnoforce", "remove", "unsub"):
            return 400, {}, b'{"ErrorMessage":"Invalid Action","StatusCode":400}'
        errors = []
        for contact in body.get("Contacts") or []:
            email = str(contact.get("Email", "")).lower()
            bad = {p: "Property not defined" for p in (contact.get("Properties") or {}) if p not in self.properties}
            bad |= {
                p: "Property type does not match definition"
                for p, v in (contact.get("Properties") or {}).items()
                if p in self.properties and v is not None and not isinstance(v, self.TYPES[self.properties[p]])
            }
            if bad or "@" not in email:
                errors.append(
                    {
                        "Email": contact.get("Email"),
                        "Error": "Object properties invalid",
                        "ErrorInfo": {"Properties": [bad] if bad else [], "Email": "@" in email},
                    }
                )
                continue
            props = self.contacts.setdefault(email, {})
            props.update({k: v for k, v in (contact.get("Properties") or {}).items() if v is not None})
            for k in [k for k, v in (contact.get("Properties") or {}).items() if v is None]:
                props.pop(k, None)
            if list_id is not None:
                members = self.lists.setdefault(list_id, {})
                if action == "remove":
                    members.pop(email, None)
                elif action == "addforce" or (action == "addnoforce" and email not in members):
                    members[email] = True
                elif action == "unsub":
                    members[email] = False
        job_id = len(self.jobs) + 1
        self.jobs[job_id] = {"polls": 0, "count": len(body.get("Contacts") or []), "errors": errors,
                             "final": "Completed", "error": "Errors in some contacts" if errors else "",
                             "error_file": f"/v3/DATA/batchjob/{job_id}/JSONError/application:json/LAST"
                             if errors else ""}  # fmt: skip
        return 201, {}, _mj([{"JobID": job_id}])


class MailchimpStandIn(StandIn):
    """Mailchimp's list members and batches as documented (esp-contracts §6.2)."""

    def __init__(self, key: str = "mc-key-us6", list_id: str = "a6b5da1054",
                 merge_tags: tuple[str, ...] = ("FNAME", "LNAME", "PLAN")) -> None:  # fmt: skip
        self.key, self.list_id, self.merge_tags = key, list_id, set(merge_tags)
        self.members: dict[str, dict[str, Any]] = {}  # hash → member
        self.batches: dict[str, dict[str, Any]] = {}
        super().__init__()

    def _error(self, status: int, title: str, detail: str) -> tuple[int, dict[str, str], bytes]:
        return status, {"Content-Type": "application/problem+json"}, orjson.dumps(
            {"type": "https://mailchimp.com/developer/marketing/docs/errors/", "title": title, "status": status,
             "detail": detail, "instance": ""})  # fmt: skip

    def answer(self, got: Received) -> tuple[int, dict[str, str], bytes]:
        path = got.path.split("?")[0]
        # The results archive is a pre-signed download, no credentials.
        if (m := re.fullmatch(r"/results/(\w+)\.tar\.gz", path)) and (batch := self.batches.get(m.group(1))):
            return 200, {"Content-Type": "application/gzip"}, batch["results"]
        auth = _basic(got)
        if auth is None or auth[1] != self.key:
            return self._error(401, "API Key Invalid", "Your API key may be invalid, or you've attempted to access "
                               "the wrong datacenter.")  # fmt: skip
        if path == "/3.0/batches" and got.method == "POST":
            return self._batch(got.json())
        if (m := re.fullmatch(r"/3.0/batches/(\w+)", path)) and got.method == "GET":
            batch = self.batches.get(m.group(1))
            if batch is None:
                return self._error(404, "Resource Not Found", "The requested resource could not be found.")
            batch["polls"] += 1
            shown = {k: v for k, v in batch.items() if k not in ("polls", "results")}
            if batch["polls"] < 2:
                shown |= {"status": "started", "finished_operations": 0, "response_body_url": ""}
            return 200, {}, orjson.dumps(shown)
        return self._member_call(got.method, path, got.json() if got.body else None)

    def _member_call(self, method: str, path: str, body: Any) -> tuple[int, dict[str, str], bytes]:
        m = re.fullmatch(r"/3.0/lists/(\w+)/members/(\w+)(/tags)?", path)
        if not m or m.group(1) != self.list_id:
            return self._error(404, "Resource Not Found", "The requested resource could not be found.")
        member_hash = m.group(2)
        if m.group(3):
            if method != "POST":
                return self._error(405, "Method Not Allowed", "")
            if member_hash not in self.members:
                return self._error(404, "Resource Not Found", "The requested resource could not be found.")
            tags = self.members[member_hash]["tags"]
            for tag in body.get("tags") or []:
                (tags.add if tag["status"] == "active" else tags.discard)(tag["name"])
            return 204, {}, b""
        if method != "PUT":
            return self._error(405, "Method Not Allowed", "")
        email = str(body.get("email_address", ""))
        if hashlib.md5(email.lower().encode()).hexdigest() != member_hash:
            return self._error(400, "Invalid Resource", "The email address does not match the subscriber hash.")
        if unknown := set(body.get("merge_fields") or {}) - self.merge_tags:
            return self._error(400, "Invalid Resource", f"Your merge fields were invalid: {sorted(unknown)[0]}.")
        member = self.members.get(member_hash)
        if member is None:
            if body.get("status_if_new") is None and body.get("status") is None:
                return self._error(400, "Invalid Resource", "The resource submitted could not be validated: "
                                   "status_if_new is required for a new member.")  # fmt: skip
            member = self.members[member_hash] = {"email_address": email, "status": body.get("status") or
                                                  body["status_if_new"], "merge_fields": {}, "tags": set()}  # fmt: skip
        elif body.get("status"):
            member["status"] = body["status"]
        member["merge_fields"].update(body.get("merge_fields") or {})
        return 200, {}, orjson.dumps({**member, "tags": sorted(member["tags"]), "id": member_hash})

    def _batch(self, body: Any) -> tuple[int, dict[str, str], bytes]:
        batch_id = f"b{len(self.batches) + 1}"
        results = []
        for op in body.get("operations") or []:
            status, _, out = self._member_call(op["method"], "/3.0" + op["path"], orjson.loads(op.get("body") or "{}"))
            results.append({"status_code": status, "operation_id": op.get("operation_id"),
                            "response": out.decode()})  # fmt: skip
        archive = io.BytesIO()
        with tarfile.open(fileobj=archive, mode="w:gz") as tar:
            raw = orjson.dumps(results)
            info = tarfile.TarInfo(f"{batch_id}/0.json")
            info.size = len(raw)
            tar.addfile(info, io.BytesIO(raw))
        errored = sum(1 for r in results if r["status_code"] >= 300)
        self.batches[batch_id] = {"id": batch_id, "status": "finished", "total_operations": len(results),
                                  "finished_operations": len(results), "errored_operations": errored,
                                  "response_body_url": f"{self.url}/results/{batch_id}.tar.gz", "polls": 0,
                                  "results": archive.getvalue()}  # fmt: skip
        return 200, {}, orjson.dumps({"id": batch_id, "status": "pending", "total_operations": len(results),
                                      "finished_operations": 0, "errored_operations": 0})  # fmt: skip


@contextmanager
def running(standin: StandIn) -> Iterator[StandIn]:
    try:
        yield standin
    finally:
        standin.close()
