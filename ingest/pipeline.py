"""The pipeline: what happens to a stored batch, conducted layer by layer (docs/architecture.md).

Each step lives in the layer that owns it and returns what the next step needs; this
module only calls them in order. Computed traits, audiences and destinations join here as
their issues land, fed by `changed_profile_ids`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from django.utils import timezone

from profiles.services.events import events_mark_processed
from profiles.services.resolution import events_resolve


@dataclass(frozen=True, slots=True)
class PipelineResult:
    processed: int
    changed_profile_ids: frozenset[int] = field(default_factory=frozenset)


def events_process(*, event_ids: Sequence[int]) -> PipelineResult:
    """Run the pipeline over stored events: resolve identities (and the traits the events
    set), then mark them processed. Idempotent: a redelivered task changes nothing."""
    now = timezone.now()
    # Resolution marks what it assigns in the same row write; the rest (already resolved,
    # or with no usable identifier) is marked here.
    resolved = events_resolve(event_ids=event_ids, processed_at=now)
    rest = [i for i in event_ids if i not in resolved.marked_ids]
    marked = events_mark_processed(event_ids=rest, at=now) if rest else 0
    return PipelineResult(
        processed=len(resolved.marked_ids) + marked, changed_profile_ids=frozenset(resolved.changed_profile_ids)
    )
