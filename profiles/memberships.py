"""A profile's audiences, for the Profile API (`/traits?class=audience`) and the REST API.
Audiences belong to the floor above (3); profiles (2) must not import them, so audiences
registers a lookup at startup (`AudiencesConfig.ready`) and profiles asks through it.
Without one registered, a profile is in no audience."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

MembershipLookup = Callable[[int], list[tuple[str, datetime]]]

_lookup: MembershipLookup | None = None


def membership_lookup_register(lookup: MembershipLookup) -> None:
    global _lookup
    _lookup = lookup


def profile_memberships(profile_id: int) -> list[tuple[str, datetime]]:
    """(audience key, entered_at) of each audience the profile is in now, by key."""
    return _lookup(profile_id) if _lookup is not None else []
