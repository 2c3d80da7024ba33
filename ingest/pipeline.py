"""The pipeline: what happens to an accepted batch, conducted layer by layer
(docs/architecture.md).

Each step lives in the layer that owns it and returns what the next step needs; this
module only calls them in order. Computed traits, audiences and destinations join here as
their issues land, fed by `changed_profile_ids`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from django.utils import timezone

from ingest.counters import counters_add, notices_add
from profiles.services.resolution import batches_resolve


@dataclass(frozen=True, slots=True)
class PipelineResult:
    processed: int  # messages taken from batches: written to the log, or dropped as duplicates
    changed_profile_ids: frozenset[int] = field(default_factory=frozenset)


def events_process(*, batch_ids: Sequence[int]) -> PipelineResult:
    """Run the pipeline over accepted batches: resolve each message's profile (and the
    traits it sets) and write it to the event log, in one transaction per chunk; under
    load, take the backlog after them too (`batches_resolve`), so the tasks of those
    batches find nothing left. Then count the duplicates the log already held (the edge
    counted them as accepted) and what was stored but not used, for the debugger.
    Idempotent: a redelivered task changes nothing."""
    resolved = batches_resolve(batch_ids=batch_ids, processed_at=timezone.now(), backlog=True)
    if resolved.duplicates:
        counters_add({key: (-n, n, 0) for key, n in resolved.duplicates.items()})
    if resolved.notices:
        notices_add(resolved.notices)
    return PipelineResult(processed=resolved.processed, changed_profile_ids=frozenset(resolved.changed_profile_ids))
