"""Mailchimp audience members (esp-contracts §6.2). A member is upserted with
`PUT /3.0/lists/{list}/members/{md5 of the lowercase email}` and `status_if_new` only (someone
who unsubscribed is never resubscribed); traits become merge fields through the configured
mapping (trait → merge tag); audiences become tags, active or inactive. A full sync goes
through `/3.0/batches`, polled to the end, each operation's result read from its archive.
The data centre is the key's `-usN` suffix; Basic auth with any user name and the key."""

from __future__ import annotations

import hashlib
import io
import tarfile
import time
from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from destinations.adapters.base import (
    DELIVERED,
    DISCARDED,
    FILTERED,
    RETRY,
    Adapter,
    Answer,
    Item,
    Outcome,
    SettingsError,
    dumps,
    http,
    judged,
    record,
    trim,
)
from destinations.adapters.mailjet import audience_of, person_traits
from destinations.adapters.webhook import check_url

STATUSES_IF_NEW = ("subscribed", "pending", "unsubscribed", "transactional")
# A batch is polled this long; one not finished is submitted again later (a PUT is an upsert).
POLL_SECONDS = 60.0
# Full syncs go by batch from this many members (fewer: one request each is quicker).
BATCH_FROM = 20


def subscriber_hash(email: str) -> str:
    return hashlib.md5(email.lower().encode()).hexdigest()


def data_centre(api_key: str) -> str | None:
    _, _, dc = api_key.rpartition("-")
    return dc if dc.startswith("us") and dc[2:].isdigit() else None


class MailchimpAdapter(Adapter):
    kind = "mailchimp"

    @staticmethod
    def check_settings(settings: Mapping[str, Any]) -> dict[str, Any]:
        allowed = {"api_key", "list_id", "merge_fields", "base_url", "status_if_new"}
        if unknown := sorted(set(settings) - allowed):
            raise SettingsError(f"settings.{unknown[0]}", f"unknown setting ({', '.join(sorted(allowed))}).")
        key = settings.get("api_key")
        if not isinstance(key, str) or not data_centre(key):
            raise SettingsError("settings.api_key", "a Mailchimp API key, ending with its data centre (…-us6).")
        list_id = settings.get("list_id")
        if not isinstance(list_id, str) or not list_id.isalnum() or len(list_id) > 40:
            raise SettingsError("settings.list_id", "the audience (list) id, e.g. a6b5da1054.")
        merge = settings.get("merge_fields", {})
        if not isinstance(merge, Mapping) or not all(
            isinstance(t, str) and t.isalnum() and t.upper() == t and len(t) <= 10 for t in merge.values()
        ):
            raise SettingsError(
                "settings.merge_fields", 'trait → merge tag (capitals, up to 10): {"first_name": "FNAME"}.'
            )
        status = settings.get("status_if_new", "subscribed")
        if status not in STATUSES_IF_NEW:
            raise SettingsError("settings.status_if_new", f"one of {', '.join(STATUSES_IF_NEW)}.")
        base = settings.get("base_url") or f"https://{data_centre(key)}.api.mailchimp.com"
        return {"api_key": key, "list_id": list_id, "merge_fields": dict(merge), "status_if_new": status,
                "base_url": check_url(base, "settings.base_url")}  # fmt: skip

    @property
    def base(self) -> str:
        key = str(self.settings.get("api_key", ""))
        return str(self.settings.get("base_url") or f"https://{data_centre(key)}.api.mailchimp.com").rstrip("/")

    def _call(self, method: str, path: str, body: Any = None) -> tuple[Answer, str]:
        raw = dumps(body) if body is not None else None
        url = f"{self.base}{path}"
        auth = ("cdp", str(self.settings.get("api_key", "")))
        return http(self.session, method, url, body=raw, auth=auth), record(method, url, raw)

    def _operations(self, item: Item) -> tuple[list[tuple[str, str, dict[str, Any]]], str]:
        """The requests one message makes, as (method, path, body), or a reason it makes none."""
        traits = item.message.get("traits") or {}
        email = str(traits.get("email"))
        member = f"/3.0/lists/{self.settings.get('list_id')}/members/{subscriber_hash(email)}"
        audience = audience_of(item.message)
        mapping: Mapping[str, str] = self.settings.get("merge_fields") or {}
        known = person_traits(item.message, leave_out=[audience] if audience else [])
        merge = {tag: known[trait] for trait, tag in mapping.items() if trait in known}
        upsert = {"email_address": email, "status_if_new": self.settings.get("status_if_new", "subscribed"),
                  "merge_fields": merge}  # fmt: skip
        if audience is None:
            wanted = merge or item.kind == "test"  # the test message upserts its member as it is
            return ([("PUT", member, upsert)] if wanted else []), "no merge field is mapped for these traits"
        active = traits.get(audience) is True
        tags = ("POST", f"{member}/tags", {"tags": [{"name": audience, "status": "active" if active else "inactive"}]})
        return ([("PUT", member, upsert), tags] if active else [tags]), ""

    def send(self, items: Sequence[Item]) -> dict[int, Outcome]:
        if sum(1 for i in items if i.kind == "sync") >= BATCH_FROM:
            return self._batch([i for i in items if i.kind == "sync"])
        out: dict[int, Outcome] = {}
        for item in items:
            if time.monotonic() > self.deadline:
                break
            ops, why = self._operations(item)
            if not ops:
                out[item.id] = Outcome(FILTERED, why)
                continue
            result = Outcome(DELIVERED)
            for method, path, body in ops:
                answer, request = self._call(method, path, body)
                result = judged(
                    answer, request, what=f"Mailchimp {path.rsplit('/', 1)[-1] if 'tags' in path else 'member'}"
                )
                if answer.status_code == 404 and method == "POST" and len(ops) == 1:
                    result = Outcome(DELIVERED, "not a member: nothing to untag", 404, request, answer.text())
                if result.status != DELIVERED:
                    result.reason = _detail(answer) or result.reason
                    break
            out[item.id] = result
            if result.status == RETRY:
                break
        return out

    def _batch(self, items: Sequence[Item]) -> dict[int, Outcome]:
        operations, out, owner = [], {}, {}
        for item in items:
            ops, why = self._operations(item)
            if not ops:
                out[item.id] = Outcome(FILTERED, why)
            for n, (method, path, body) in enumerate(ops):
                op_id = f"cdp-{item.id}-{n}"
                owner[op_id] = item.id
                operations.append({"method": method, "path": path.removeprefix("/3.0"), "operation_id": op_id,
                                   "body": orjson.dumps(body).decode()})  # fmt: skip
        if not operations:
            return out
        answer, request = self._call("POST", "/3.0/batches", {"operations": operations})
        if not answer.ok:
            whole = judged(answer, request, what="Mailchimp /batches")
            return out | {i: whole for i in set(owner.values())}
        batch_id = (answer.json() or {}).get("id")
        status = self._poll(str(batch_id))
        if status is None or status.get("status") != "finished":
            retry = Outcome(RETRY, f"Mailchimp batch {batch_id} not finished after {POLL_SECONDS:g} s", 200, request)
            return out | {i: retry for i in set(owner.values())}
        failures = self._failures(status) if status.get("errored_operations") else {}
        for op_id, item_id in owner.items():
            if op_id in failures and item_id not in out:
                code, text = failures[op_id]
                status_name = RETRY if code == 429 or code >= 500 else DISCARDED
                out[item_id] = Outcome(
                    status_name, f"Mailchimp answered {code} in batch {batch_id}", code, request, text
                )
        for item_id in set(owner.values()):
            out.setdefault(item_id, Outcome(DELIVERED, "", 200, request, f"batch {batch_id} finished"))
        return out

    def _poll(self, batch_id: str) -> dict[str, Any] | None:
        deadline, wait = time.monotonic() + POLL_SECONDS, 0.05
        while time.monotonic() < deadline:
            answer, _ = self._call("GET", f"/3.0/batches/{batch_id}")
            data = answer.json() if answer.ok else None
            if isinstance(data, dict) and data.get("status") == "finished":
                return data
            time.sleep(wait)
            wait = min(wait * 2, 2.0)
        return None

    def _failures(self, status: Mapping[str, Any]) -> dict[str, tuple[int, str]]:
        """Each failed operation's status code and response, from the batch's result archive
        (a tar.gz of JSON arrays of `{status_code, operation_id, response}`)."""
        url = str(status.get("response_body_url") or "")
        if not url:
            return {}
        try:
            raw = self.session.get(url, timeout=30).content
            out: dict[str, tuple[int, str]] = {}
            with tarfile.open(fileobj=io.BytesIO(raw), mode="r:gz") as archive:
                for member in archive.getmembers():
                    handle = archive.extractfile(member) if member.isfile() else None
                    for result in orjson.loads(handle.read()) if handle else []:
                        if int(result.get("status_code", 200)) >= 300:
                            out[str(result.get("operation_id"))] = (int(result["status_code"]),
                                                                     trim(str(result.get("response", ""))))  # fmt: skip
            return out
        except (OSError, tarfile.TarError, orjson.JSONDecodeError, ValueError, TypeError):
            return {}


def _detail(answer: Answer) -> str:
    """Mailchimp's error body: `{"title", "status", "detail"}`."""
    data = answer.json()
    if isinstance(data, dict) and (data.get("title") or data.get("detail")):
        return f"Mailchimp {answer.status_code}: {data.get('title', '')}: {data.get('detail', '')}"[:500]
    return ""
