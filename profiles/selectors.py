"""Reads of the event log and profiles."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.db.models import Q

from profiles.models import Demotion, Event, Identity, IdentityAudit, Merge, Profile


def events_unprocessed_ids(*, received_before: datetime, limit: int) -> list[int]:
    """Ids of events the pipeline has not finished, oldest first (the partial index
    `event_unprocessed` serves this)."""
    return list(
        Event.objects.filter(processed_at__isnull=True, received_at__lt=received_before)
        .order_by("received_at")
        .values_list("id", flat=True)[:limit]
    )


def events_recent_for_source(*, source_id: int, limit: int = 50) -> list[Event]:
    """The newest events a source stored, for the ingest debugger."""
    return list(Event.objects.filter(source_id=source_id).order_by("-received_at")[:limit])


def events_count_for_source(*, source_id: int, since: datetime | None = None) -> int:
    qs = Event.objects.filter(source_id=source_id)
    if since is not None:
        qs = qs.filter(received_at__gte=since)
    return qs.count()


# --- Profiles and their identity graph -----------------------------------------------------


@dataclass(frozen=True)
class Explanation:
    """Why a profile holds what it holds: each identifier with the message that brought it,
    and each merge, demotion and staff action, oldest first."""

    profile: Profile
    requested: Profile  # the profile asked for: a tombstone when it was merged away
    identities: list[Identity]
    merges: list[Merge]
    demotions: list[Demotion]
    audits: list[IdentityAudit]


def profile_live(*, profile: Profile) -> Profile:
    """The live profile a (possibly merged-away) profile resolves to."""
    seen = set()
    while profile.merged_into_id is not None and profile.id not in seen:
        seen.add(profile.id)
        profile = Profile.objects.get(id=profile.merged_into_id)
    return profile


def profile_explain(*, profile_id: int, limit: int = 500) -> Explanation:
    """Raises Profile.DoesNotExist for an unknown id."""
    requested = Profile.objects.get(id=profile_id)
    live = profile_live(profile=requested)
    family = [live.id, *Profile.objects.filter(merged_into=live).values_list("id", flat=True)]
    return Explanation(
        profile=live,
        requested=requested,
        identities=list(Identity.objects.filter(profile=live).order_by("first_seen_at", "id")),
        merges=list(
            Merge.objects.filter(Q(winner_id__in=family) | Q(loser_id__in=family))
            .select_related("winner", "loser", "actor")
            .order_by("created_at", "id")[:limit]
        ),
        demotions=list(Demotion.objects.filter(profile_id__in=family).order_by("created_at", "id")[:limit]),
        audits=list(
            IdentityAudit.objects.filter(profile_id__in=family).select_related("actor").order_by("created_at", "id")
        ),
    )
