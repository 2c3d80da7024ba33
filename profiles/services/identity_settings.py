"""Identity settings from the database, as the planner's frozen rules."""

from __future__ import annotations

from collections.abc import Iterable

from profiles.identity.rules import DEFAULT_BLOCKED, CustomKind, IdentityRules, Window, build_rules
from profiles.models import IdentityConfig, IdentityKind


def identity_rules() -> IdentityRules:
    """The current rules (two small queries)."""
    config = IdentityConfig.objects.filter(pk=1).first() or IdentityConfig()
    entries = []
    custom = []
    for row in IdentityKind.objects.all():
        entries.append((row.kind, row.priority, max(row.limit, 1), Window(row.window),
                        tuple(row.blocked_values.splitlines())))  # fmt: skip
        if row.read_from and row.key:
            custom.append(CustomKind(row.kind, row.read_from, row.key))
    return build_rules(
        entries,
        custom=tuple(custom),
        max_merges=config.max_merges,
        max_identities=config.max_identities,
        alias_merges=config.alias_merges,
    )


def identity_kinds_register(*, kinds: Iterable[str], rules: IdentityRules) -> None:
    """Add kinds never seen before to the settings, with the default limit and block list
    and no explicit priority, as Segment auto-adds unseen types. Idempotent."""
    unseen = sorted({k for k in kinds if k not in rules.kinds})
    if unseen:
        IdentityKind.objects.bulk_create(
            [IdentityKind(kind=k, blocked_values="\n".join(DEFAULT_BLOCKED)) for k in unseen], ignore_conflicts=True
        )
