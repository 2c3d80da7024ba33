"""Reads of SQL traits' runs."""

from __future__ import annotations

from sqltraits.models import SqlTraitRun


def sql_trait_runs(*, trait_id: int, limit: int = 20) -> list[SqlTraitRun]:
    """A definition's runs, newest first (one query, over the `(trait, -created_at)` index)."""
    return list(SqlTraitRun.objects.filter(trait_id=trait_id).order_by("-created_at", "-id")[:limit])
