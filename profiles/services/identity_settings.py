"""Identity settings from the database, as the planner's frozen rules."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.db import connection

from profiles.identity.rules import (
    DEFAULT_BLOCKED,
    MAX_IDENTITIES,
    MAX_MERGES,
    CustomKind,
    IdentityRules,
    Window,
    build_rules,
)
from profiles.models import IdentityConfig, IdentityKind

_KIND_COLUMNS = ("kind", "priority", "limit", "window", "blocked_values", "read_from", "key")
_CONFIG_COLUMNS = ("max_merges", "max_identities", "alias_merges")
# The last rules built, with the rows they were built from.
_built: tuple[tuple[Any, ...], IdentityRules] | None = None


def identity_rules() -> IdentityRules:
    """The current rules, read on every batch so a change in the admin applies to the next
    one. Reading the two small tables is cheap; building the rules (a regex per block list)
    is not (measured: 3 ms a batch through the ORM), so they are rebuilt only when the rows
    differ from those of the last build."""
    global _built
    kinds, config = IdentityKind._meta.db_table, IdentityConfig._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {', '.join(_quoted(_KIND_COLUMNS))} FROM {kinds} ORDER BY kind")
        kind_rows = tuple(tuple(row) for row in cursor.fetchall())
        cursor.execute(f"SELECT {', '.join(_CONFIG_COLUMNS)} FROM {config} WHERE id = 1")
        config_row = cursor.fetchone()
    stamp = (kind_rows, tuple(config_row) if config_row else None)
    if _built is not None and _built[0] == stamp:
        return _built[1]
    max_merges, max_identities, alias_merges = config_row or (MAX_MERGES, MAX_IDENTITIES, True)
    entries, custom = [], []
    for kind, priority, limit, window, blocked, read_from, key in kind_rows:
        entries.append((kind, priority, max(limit, 1), Window(window), tuple(blocked.splitlines())))
        if read_from and key:
            custom.append(CustomKind(kind, read_from, key))
    rules = build_rules(
        entries,
        custom=tuple(custom),
        max_merges=max_merges,
        max_identities=max_identities,
        alias_merges=bool(alias_merges),
    )
    _built = (stamp, rules)
    return rules


def _quoted(columns: Iterable[str]) -> list[str]:
    return [connection.ops.quote_name(c) for c in columns]


# Serialises the registration of new kinds, so concurrent workers cannot both take the
# cap's last places (taken only when a batch carries a kind the rules do not know).
_REGISTER_LOCK = (0x43445052, 2)  # "CDPR", 2


def identity_kinds_register(*, kinds: Iterable[str], rules: IdentityRules) -> set[str]:
    """Add kinds never seen before to the settings, with the default limit and block list
    and no explicit priority, as Segment auto-adds unseen types, up to the cap of kinds that
    messages may create (`IdentityConfig.max_auto_kinds`; a write key is public, and each
    unseen `context.externalIds` type would otherwise become a row). Returns the kinds
    refused for the cap: their identifiers must not be used. Idempotent; runs in the
    caller's transaction."""
    unseen = {k for k in kinds if k not in rules.kinds}
    if not unseen:
        return set()
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s, %s)", _REGISTER_LOCK)
    new = unseen - set(IdentityKind.objects.filter(kind__in=unseen).values_list("kind", flat=True))
    if not new:
        return set()
    cap = IdentityConfig.objects.filter(pk=1).values_list("max_auto_kinds", flat=True).first()
    if cap is None:  # no settings row: the field's default
        cap = IdentityConfig._meta.get_field("max_auto_kinds").get_default()
    room = max(0, cap - IdentityKind.objects.filter(auto_created=True).count())
    taken = sorted(new)[:room]
    IdentityKind.objects.bulk_create(
        [IdentityKind(kind=k, blocked_values="\n".join(DEFAULT_BLOCKED), auto_created=True) for k in taken],
        ignore_conflicts=True,
    )
    return new - set(taken)
