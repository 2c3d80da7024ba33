"""Hooks the audience pages show once other parts exist. Until then they show nothing.

- The destinations an audience syncs to (the destinations issue): whatever connects audiences
  to destinations registers a lookup with `audience_destinations_register`; the audience page
  lists what it returns, and shows no section while nothing is registered.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True, slots=True)
class DestinationLink:
    name: str
    url: str  # its admin page
    status: str  # e.g. "syncing", "failing: 401 from Mailchimp"
    last_synced_at: datetime | None


DestinationsLookup = Callable[[int], list[DestinationLink]]
_destinations: DestinationsLookup | None = None


def audience_destinations_register(lookup: DestinationsLookup) -> None:
    global _destinations
    _destinations = lookup


def audience_destinations(audience_id: int) -> list[DestinationLink] | None:
    """The destinations the audience syncs to; None while no destinations exist (no lookup)."""
    return _destinations(audience_id) if _destinations is not None else None
