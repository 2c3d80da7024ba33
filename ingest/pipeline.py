"""The pipeline: what happens to a stored batch, conducted layer by layer (docs/architecture.md).

Each step lives in the layer that owns it and returns what the next step needs; this
module only calls them in order. Identity resolution, traits, audiences and destinations
join here as their issues land.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from profiles.services.events import events_mark_processed


@dataclass(frozen=True, slots=True)
class PipelineResult:
    processed: int


def events_process(*, event_ids: Sequence[int]) -> PipelineResult:
    """Run the pipeline over stored events. Idempotent: events already processed are
    skipped, so a redelivered task changes nothing."""
    return PipelineResult(processed=events_mark_processed(event_ids=event_ids))
