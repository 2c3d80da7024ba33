"""A destination's body, checked (pure): name, kind, enabled, subscriptions (audiences,
traits, the event stream for webhooks), consent categories and the kind's settings. Errors
name the field (`settings.urls[0]: …`). Secrets are write-only: a change that leaves one out
keeps the stored one."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from destinations.adapters import ADAPTERS
from destinations.adapters.base import SettingsError

FIELDS = ("name", "kind", "enabled", "audiences", "traits", "events", "consent_categories", "settings")
SECRETS = ("shared_secret", "api_key", "api_secret")
KEY_RE = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
CATEGORY_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,100}$")
MAX_KEYS = 500


class DestinationError(ValueError):
    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path = path
        self.message = message


@dataclass(frozen=True, slots=True)
class Definition:
    name: str
    kind: str
    enabled: bool
    audiences: list[str] | str
    traits: list[str] | str
    events: dict[str, Any]
    consent_categories: list[str]
    settings: dict[str, Any]

    def fields(self) -> dict[str, Any]:
        return {f: getattr(self, f) for f in FIELDS}


def _keys(value: Any, path: str) -> list[str] | str:
    if value == "all":
        return "all"
    if not isinstance(value, list) or len(value) > MAX_KEYS:
        raise DestinationError(path, f'"all", or a list of at most {MAX_KEYS} snake_case keys.')
    for i, key in enumerate(value):
        if not isinstance(key, str) or not KEY_RE.match(key):
            raise DestinationError(f"{path}[{i}]", "a snake_case key.")
    return sorted(set(value))


def _events(value: Any, kind: str) -> dict[str, Any]:
    if value in (None, {}):
        return {}
    if kind != "webhook":
        raise DestinationError("events", "only a webhook takes the event stream.")
    if not isinstance(value, Mapping) or set(value) - {"sources", "names"}:
        raise DestinationError("events", '{"sources": [source ids], "names": [event names]} (names optional).')
    sources, names = value.get("sources", []), value.get("names", [])
    if not isinstance(sources, list) or not sources or len(sources) > 100:
        raise DestinationError("events.sources", "a list of 1 to 100 source ids.")
    for i, s in enumerate(sources):
        if isinstance(s, bool) or not isinstance(s, int) or s <= 0:
            raise DestinationError(f"events.sources[{i}]", "a source id (a positive integer).")
    if not isinstance(names, list) or len(names) > MAX_KEYS:
        raise DestinationError("events.names", f"a list of at most {MAX_KEYS} event names (empty: every event).")
    for i, n in enumerate(names):
        if not isinstance(n, str) or not n or len(n) > 200:
            raise DestinationError(f"events.names[{i}]", "an event name (1 to 200 characters).")
    return {"sources": sorted(set(sources)), "names": sorted(set(names))}


def definition_parse(data: Mapping[str, Any], *, current: Definition | None = None) -> Definition:
    """The body (merged over `current` for a change), checked. Raises `DestinationError`."""
    if not isinstance(data, Mapping):
        raise DestinationError("body", "a JSON object.")
    if unknown := sorted(set(data) - set(FIELDS)):
        raise DestinationError(unknown[0][:40], "unknown field.")
    base = current.fields() if current else {}
    merged = {**base, **data}
    name = merged.get("name")
    if not isinstance(name, str) or not name.strip() or len(name) > 100:
        raise DestinationError("name", "required: 1 to 100 characters.")
    kind = merged.get("kind")
    if kind not in ADAPTERS:
        raise DestinationError("kind", f"one of {', '.join(ADAPTERS)}.")
    if current and kind != current.kind:
        raise DestinationError("kind", "a destination's kind never changes: make a new one.")
    enabled = merged.get("enabled", True)
    if not isinstance(enabled, bool):
        raise DestinationError("enabled", "true or false.")
    categories = merged.get("consent_categories", [])
    if not isinstance(categories, list) or len(categories) > 50:
        raise DestinationError("consent_categories", "a list of at most 50 category ids.")
    for i, c in enumerate(categories):
        if not isinstance(c, str) or not CATEGORY_RE.match(c):
            raise DestinationError(f"consent_categories[{i}]", "a category id (letters, digits, _ . : -).")
    settings = data.get("settings", None)
    if settings is None and current is None:
        raise DestinationError("settings", "required: the settings of the kind.")
    if settings is not None and not isinstance(settings, Mapping):
        raise DestinationError("settings", "a JSON object.")
    if current and settings is not None:  # write-only secrets: left out, the stored one stays
        settings = {**{k: v for k, v in current.settings.items() if k in SECRETS}, **settings}
    try:
        checked = ADAPTERS[kind].check_settings(settings if settings is not None else current.settings)  # type: ignore[union-attr]
    except SettingsError as exc:
        raise DestinationError(exc.path, exc.message) from None
    return Definition(
        name=name.strip(), kind=kind, enabled=enabled,
        audiences=_keys(merged.get("audiences", []), "audiences"), traits=_keys(merged.get("traits", []), "traits"),
        events=_events(merged.get("events"), kind), consent_categories=sorted(set(categories)), settings=checked,
    )  # fmt: skip


def public_settings(settings: Mapping[str, Any]) -> dict[str, Any]:
    """The settings as shown: without secrets."""
    return {k: v for k, v in settings.items() if k not in SECRETS}
