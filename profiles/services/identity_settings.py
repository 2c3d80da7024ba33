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


def identity_kinds_register(*, kinds: Iterable[str], rules: IdentityRules) -> None:
    """Add kinds never seen before to the settings, with the default limit and block list
    and no explicit priority, as Segment auto-adds unseen types. Idempotent."""
    unseen = sorted({k for k in kinds if k not in rules.kinds})
    if unseen:
        IdentityKind.objects.bulk_create(
            [IdentityKind(kind=k, blocked_values="\n".join(DEFAULT_BLOCKED)) for k in unseen], ignore_conflicts=True
        )
