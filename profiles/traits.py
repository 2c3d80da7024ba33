"""Trait merging, pure: per trait the newest event time wins, null removes, and nothing
older ever rolls a newer value back (a removed trait keeps its time in the meta)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

Meta = dict[str, dict[str, Any]]  # trait -> {"at": iso, "source_id": int, "message_id": str}


@dataclass(frozen=True, slots=True)
class TraitUpdate:
    key: str
    value: Any  # None removes the trait
    at: datetime
    source_id: int
    message_id: str


def event_trait_updates(
    *, type_: str, traits: Any, context: Any, at: datetime, source_id: int, message_id: str
) -> list[TraitUpdate]:
    """Traits a message sets on its person: `context.traits` on any call, and `traits` on
    identify (a group call's `traits` describe the group, not the person)."""
    merged: dict[str, Any] = {}
    context_traits = context.get("traits") if isinstance(context, dict) else None
    if isinstance(context_traits, dict):
        merged.update(context_traits)
    if type_ == "identify" and isinstance(traits, dict):
        merged.update(traits)
    return [TraitUpdate(key, value, at, source_id, message_id) for key, value in merged.items()]


def _stamp(entry: Mapping[str, Any] | None) -> tuple[str, str]:
    if not entry:
        return ("", "")
    return (str(entry.get("at", "")), str(entry.get("message_id", "")))


def _iso(at: datetime) -> str:
    # One fixed format (UTC, microseconds) so stamps compare as strings; isoformat is the
    # same text as strftime("%Y-%m-%dT%H:%M:%S.%fZ"), several times faster.
    return at.astimezone(UTC).isoformat(timespec="microseconds")[:-6] + "Z"


def traits_apply_updates(
    traits: Mapping[str, Any], meta: Mapping[str, Mapping[str, Any]], updates: Iterable[TraitUpdate]
) -> tuple[dict[str, Any], Meta, bool]:
    """Apply updates; an update wins only if its (time, messageId) is newer than the trait's.
    Returns the new traits, the new meta, and whether anything changed."""
    out, out_meta, changed = dict(traits), {k: dict(v) for k, v in meta.items()}, False
    for update in updates:
        stamp = {"at": _iso(update.at), "source_id": update.source_id, "message_id": update.message_id}
        if _stamp(stamp) <= _stamp(out_meta.get(update.key)):
            continue
        out_meta[update.key] = stamp
        if update.value is None:
            if update.key in out:
                del out[update.key]
                changed = True
        elif out.get(update.key, _MISSING) != update.value:
            out[update.key] = update.value
            changed = True
    return out, out_meta, changed


def traits_merge(
    winner: tuple[Mapping[str, Any], Mapping[str, Mapping[str, Any]]],
    loser: tuple[Mapping[str, Any], Mapping[str, Mapping[str, Any]]],
) -> tuple[dict[str, Any], Meta]:
    """The traits of two merged profiles: per trait, the newest value wins."""
    traits, meta = dict(winner[0]), {k: dict(v) for k, v in winner[1].items()}
    loser_traits, loser_meta = loser
    for key in set(loser_meta) | set(loser_traits):
        if _stamp(loser_meta.get(key)) > _stamp(meta.get(key)) or (key not in meta and key not in traits):
            if key in loser_meta:
                meta[key] = dict(loser_meta[key])
            if key in loser_traits:
                traits[key] = loser_traits[key]
            else:
                traits.pop(key, None)
    return traits, meta


_MISSING = object()


def traits_changed_keys(before: Mapping[str, Any], after: Mapping[str, Any]) -> set[str]:
    """The trait keys whose value differs between `before` and `after` (set, changed, removed)."""
    return {k for k in before.keys() | after.keys() if before.get(k, _MISSING) != after.get(k, _MISSING)}
