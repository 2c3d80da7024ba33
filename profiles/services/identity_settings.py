"""Identity settings from the database, as the planner's frozen rules."""

from __future__ import annotations

from collections.abc import Iterable

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


def identity_rules() -> IdentityRules:
    """The current rules (two small queries; read on every batch so a change in the admin
    applies to the next one)."""
    config = IdentityConfig.objects.filter(pk=1).values_list("max_merges", "max_identities", "alias_merges").first()
    max_merges, max_identities, alias_merges = config or (MAX_MERGES, MAX_IDENTITIES, True)
    entries, custom = [], []
    rows = IdentityKind.objects.values_list("kind", "priority", "limit", "window", "blocked_values", "read_from", "key")
    for kind, priority, limit, window, blocked, read_from, key in rows:
        entries.append((kind, priority, max(limit, 1), Window(window), tuple(blocked.splitlines())))
        if read_from and key:
            custom.append(CustomKind(kind, read_from, key))
    return build_rules(
        entries, custom=tuple(custom), max_merges=max_merges, max_identities=max_identities, alias_merges=alias_merges
    )


def identity_kinds_register(*, kinds: Iterable[str], rules: IdentityRules) -> None:
    """Add kinds never seen before to the settings, with the default limit and block list
    and no explicit priority, as Segment auto-adds unseen types. Idempotent."""
    unseen = sorted({k for k in kinds if k not in rules.kinds})
    if unseen:
        IdentityKind.objects.bulk_create(
            [IdentityKind(kind=k, blocked_values="\n".join(DEFAULT_BLOCKED)) for k in unseen], ignore_conflicts=True
        )
