"""Mailjet contact lists (esp-contracts §3). Each audience maps to a contact list: entries
are added with `addnoforce` (someone who unsubscribed stays unsubscribed) and exits
removed, in bulk through `managemanycontacts`, whose job is polled to completion with the
errors recorded per contact. Traits become contact properties flattened one level, each
created first through `/contactmetadata` with its type. Basic auth with key and secret."""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

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
from destinations.adapters.webhook import check_url
from destinations.flatten import datatype, flatten_traits

PUBLIC_URL = "https://api.mailjet.com"
# A bulk job is polled this long (Mailjet's jobs of a few hundred contacts take seconds);
# one still running after it is sent again later (Email is the unique key: no duplicate).
POLL_SECONDS = 30.0
DONE = {"Completed", "Error", "Abort"}


def _check_str(settings: Mapping[str, Any], key: str) -> str:
    value = settings.get(key)
    if not isinstance(value, str) or not value or len(value) > 500:
        raise SettingsError(f"settings.{key}", "required: a string of at most 500 characters.")
    return value


def audience_of(message: Mapping[str, Any]) -> str | None:
    """The audience key of an audience identify (`context.personas`), else None."""
    personas = (message.get("context") or {}).get("personas") or {}
    if isinstance(personas, Mapping) and personas.get("computation_class") == "audience":
        key = personas.get("computation_key")
        return key if isinstance(key, str) else None
    return None


def person_traits(message: Mapping[str, Any], *, leave_out: Sequence[str] = ()) -> dict[str, Any]:
    """The traits a list destination stores: the person's (`context.traits`), then the
    message's own, without the audience flag and the email (the contact's key)."""
    context_traits = (message.get("context") or {}).get("traits") or {}
    traits = {**(context_traits if isinstance(context_traits, Mapping) else {}), **(message.get("traits") or {})}
    for key in ("email", *leave_out):
        traits.pop(key, None)
    return traits


class MailjetAdapter(Adapter):
    kind = "mailjet"

    @staticmethod
    def check_settings(settings: Mapping[str, Any]) -> dict[str, Any]:
        if unknown := sorted(set(settings) - {"api_key", "api_secret", "lists", "base_url"}):
            raise SettingsError(f"settings.{unknown[0]}", "unknown setting (api_key, api_secret, lists, base_url).")
        lists = settings.get("lists", {})
        if not isinstance(lists, Mapping):
            raise SettingsError("settings.lists", 'an object of audience key to list id: {"re_engage": 12345}.')
        for key, list_id in lists.items():
            if isinstance(list_id, bool) or not isinstance(list_id, int) or list_id <= 0:
                raise SettingsError(f"settings.lists.{key}", "a Mailjet contact list id (a positive integer).")
        return {
            "api_key": _check_str(settings, "api_key"), "api_secret": _check_str(settings, "api_secret"),
            "lists": dict(lists), "base_url": check_url(settings.get("base_url") or PUBLIC_URL, "settings.base_url"),
        }  # fmt: skip

    @property
    def base(self) -> str:
        return str(self.settings.get("base_url") or PUBLIC_URL).rstrip("/")

    @property
    def auth(self) -> tuple[str, str]:
        return (str(self.settings.get("api_key", "")), str(self.settings.get("api_secret", "")))

    def _call(self, method: str, path: str, body: Any = None) -> tuple[Answer, str]:
        raw = dumps(body) if body is not None else None
        url = f"{self.base}{path}"
        return http(self.session, method, url, body=raw, auth=self.auth), record(method, url, raw)

    def send(self, items: Sequence[Item]) -> dict[int, Outcome]:
        out: dict[int, Outcome] = {}
        notes: dict[int, dict[str, Any]] = {}
        lists: Mapping[str, int] = self.settings.get("lists") or {}
        groups: dict[tuple[int | None, str], list[tuple[Item, dict[str, Any]]]] = defaultdict(list)
        for item in items:
            audience = audience_of(item.message)
            flat = flatten_traits(person_traits(item.message, leave_out=[audience] if audience else []))
            if flat.dropped:
                notes[item.id] = {"dropped": flat.dropped}
            email = str((item.message.get("traits") or {}).get("email"))
            contact: dict[str, Any] = {"Email": email, "Properties": flat.properties}
            if audience is None:
                groups[(None, "update")].append((item, contact))
            elif audience not in lists:
                out[item.id] = Outcome(FILTERED, f"no Mailjet list set for audience {audience}")
            elif (item.message.get("traits") or {}).get(audience) is True:
                groups[(lists[audience], "addnoforce")].append((item, contact))
            else:
                groups[(lists[audience], "remove")].append((item, {"Email": email}))
        if not groups:
            return out
        failed = self._define_properties([c for group in groups.values() for _, c in group])
        if failed is not None:  # nothing was sent: the first item carries the failure
            out[min(i.id for group in groups.values() for i, _ in group)] = failed
            return out
        for (list_id, action), members in groups.items():
            results = self._bulk(list_id, action, members)
            for item, _ in members:
                result = results.get(item.id) or replace(results[0], notes={})
                result.notes = {**notes.get(item.id, {}), **result.notes}
                out[item.id] = result
            if 0 in results and results[0].status == RETRY:
                break  # the destination is failing: the other groups wait, untried
        return out

    def _define_properties(self, contacts: Sequence[Mapping[str, Any]]) -> Outcome | None:
        """Create each property not yet known, with its type. A retried failure returns the
        outcome for the batch (nothing is sent before the properties exist)."""
        known: dict[str, str] = self.state.setdefault("mailjet_properties", {})
        wanted: dict[str, str] = {}
        for contact in contacts:
            for name, value in (contact.get("Properties") or {}).items():
                kind = datatype(value)
                if kind and name not in known:
                    wanted.setdefault(name, kind)
        for name, kind in sorted(wanted.items()):
            answer, request = self._call("POST", "/v3/REST/contactmetadata",
                                         {"Datatype": kind, "Name": name, "NameSpace": "static"})  # fmt: skip
            if answer.ok or (answer.status_code == 400 and "already exists" in answer.body.lower()):
                known[name] = kind
            elif answer.transient:
                return judged(answer, request, what="Mailjet /contactmetadata")
            # Another refusal is seen on the contact itself (Mailjet names the property).
        return None

    def _bulk(self, list_id: int | None, action: str, members: list[tuple[Item, dict[str, Any]]]) -> dict[Any, Outcome]:
        body: dict[str, Any]
        if list_id is None:
            path, body = "/v3/REST/contact/managemanycontacts", {"Contacts": [c for _, c in members]}
        else:
            path = f"/v3/REST/contactslist/{list_id}/managemanycontacts"
            body = {"Action": action, "Contacts": [c for _, c in members]}
        answer, request = self._call("POST", path, body)
        if not answer.ok:
            return {0: judged(answer, request, what="Mailjet managemanycontacts")}
        data = answer.json() or {}
        job = ((data.get("Data") or [{}])[0] or {}).get("JobID") if isinstance(data, dict) else None
        if job is None:
            return {0: Outcome(RETRY, "Mailjet answered without a JobID", answer.status_code, request, answer.text())}
        status, job_answer = self._poll(f"{path}/{job}")
        if status is None:
            return {0: Outcome(RETRY, f"Mailjet job {job} not done after {POLL_SECONDS:g} s", None, request,
                               job_answer.text())}  # fmt: skip
        errors = self._errors(job, job_answer) if status != "Completed" or _has_error(job_answer) else {}
        out: dict[Any, Outcome] = {}
        for item, contact in members:
            email = str(contact["Email"]).lower()
            if email in errors:
                reason, raw = errors[email]
                out[item.id] = Outcome(DISCARDED, f"Mailjet: {reason}", 200, request, trim(raw))
            elif status == "Completed":
                out[item.id] = Outcome(DELIVERED, "", 200, request, f"job {job} Completed")
            else:
                out[item.id] = Outcome(DISCARDED, f"Mailjet job {job} ended {status}", 200, request, job_answer.text())
        return out

    def _poll(self, path: str) -> tuple[str | None, Answer]:
        deadline = time.monotonic() + POLL_SECONDS
        wait = 0.05
        while True:
            answer, _ = self._call("GET", path)
            data = answer.json() if answer.ok else None
            status = ((data or {}).get("Data") or [{}])[0].get("Status") if isinstance(data, dict) else None
            if status in DONE or time.monotonic() > deadline:
                return (status if status in DONE else None), answer
            time.sleep(wait)
            wait = min(wait * 2, 1.0)

    def _errors(self, job: Any, answer: Answer) -> dict[str, tuple[str, str]]:
        """The job's errors per contact email (the message, and the whole entry), from its
        JSON error file."""
        file, _ = self._call("GET", f"/v3/DATA/batchjob/{job}/JSONError/application:json/LAST")
        rows = file.json() if file.ok else None
        out: dict[str, tuple[str, str]] = {}
        for row in rows if isinstance(rows, list) else []:
            if isinstance(row, Mapping):
                email = _find_email(row)
                if email:
                    reason = str(row.get("Error") or row.get("error") or row.get("ErrorMessage") or "refused")
                    out[email.lower()] = (reason[:500], dumps(row).decode())
        return out


def _has_error(answer: Answer) -> bool:
    data = answer.json() or {}
    first = (data.get("Data") or [{}])[0] if isinstance(data, dict) else {}
    return bool(first.get("Error") or first.get("ErrorFile"))


def _find_email(row: Mapping[str, Any]) -> str | None:
    for key in ("Email", "email"):
        if isinstance(row.get(key), str):
            return str(row[key])
    for value in row.values():
        if isinstance(value, Mapping) and (found := _find_email(value)):
            return found
    return None
