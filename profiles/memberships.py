"""A profile's audiences, for the Profile API (`/traits?class=audience`) and the REST API.
Audiences belong to the floor above (3); profiles (2) must not import them, so audiences
registers a lookup at startup (`AudiencesConfig.ready`) and profiles asks through it.
Without one registered, a profile is in no audience.

Audiences may also register the same answer as SQL (`membership_sql_register`), which the
Profile API's `/traits` folds into its one statement on PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

MembershipLookup = Callable[[int], list[tuple[str, datetime]]]

_lookup: MembershipLookup | None = None
_sql: str | None = None


def membership_lookup_register(lookup: MembershipLookup) -> None:
    global _lookup
    _lookup = lookup


def profile_memberships(profile_id: int) -> list[tuple[str, datetime]]:
    """(audience key, entered_at) of each audience the profile is in now, by key."""
    return _lookup(profile_id) if _lookup is not None else []


def membership_sql_register(sql: str) -> None:
    """`sql` is a PostgreSQL scalar subquery over `p.id` (the profile's id) answering a json
    array of `[audience key, entered_at]`, one per audience the profile is in now: the
    registered lookup's answer, for one statement that reads a profile and its audiences."""
    global _sql
    _sql = sql


def profile_memberships_sql() -> str:
    """The registered subquery, or one answering no audience."""
    return _sql if _sql is not None else "'[]'::json"
