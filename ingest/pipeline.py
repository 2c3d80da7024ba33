"""The pipeline: what happens to a stored batch, conducted layer by layer (docs/architecture.md).

Each step lives in the layer that owns it and returns what the next step needs; this
module only calls them in order. Computed traits, audiences and destinations join here as
their issues land, fed by `changed_profile_ids`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from django.utils import timezone

from profiles.services.resolution import CLAIM_BATCH, events_resolve


@dataclass(frozen=True, slots=True)
class PipelineResult:
    processed: int
    changed_profile_ids: frozenset[int] = field(default_factory=frozenset)


def events_process(*, event_ids: Sequence[int]) -> PipelineResult:
    """Run the pipeline over stored events: resolve identities (and the traits the events
    set) and mark the events processed, in one transaction per chunk. Under load it also
    takes the backlog stored after them (`events_resolve`'s claim), so the tasks of those
    events find nothing left. Idempotent: a redelivered task changes nothing."""
    resolved = events_resolve(event_ids=event_ids, processed_at=timezone.now(), backlog=CLAIM_BATCH)
    return PipelineResult(
        processed=len(resolved.marked_ids), changed_profile_ids=frozenset(resolved.changed_profile_ids)
    )
