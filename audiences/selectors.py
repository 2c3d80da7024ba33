"""Reading audiences: members now or at any past moment, the history of entries and exits,
sizes per day, and a profile's audiences."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta

from django.db.models import Count
from django.db.models.functions import TruncDate
from django.utils import timezone

from audiences.models import AudienceMember, Membership
from profiles.models import Profile


@dataclass(frozen=True, slots=True)
class MemberRow:
    profile_id: int
    key: str  # use_…
    entered_at: datetime


def members_at(*, audience_id: int, at: datetime | None = None, after: int = 0, limit: int = 100) -> list[MemberRow]:
    """The members now (`at` None) or at `at`, by profile id after `after`: one query on
    the history's intervals (entered_at <= at < exited_at)."""
    if at is None:
        rows = list(
            AudienceMember.objects.filter(audience_id=audience_id, profile_id__gt=after)
            .order_by("profile_id")
            .values_list("profile_id", "entered_at")[:limit]
        )
    else:
        q = Membership.objects.filter(audience_id=audience_id, entered_at__lte=at, profile_id__gt=after).exclude(
            exited_at__lte=at
        )
        rows = list(q.order_by("profile_id", "entered_at").values_list("profile_id", "entered_at")[: limit * 2])
        seen: dict[int, datetime] = {}
        for pid, entered in rows:
            seen.setdefault(pid, entered)
        rows = list(seen.items())[:limit]
    keys = dict(Profile.objects.filter(pk__in=[pid for pid, _ in rows]).values_list("pk", "key"))
    return [MemberRow(pid, keys.get(pid, ""), entered) for pid, entered in rows]


@dataclass(frozen=True, slots=True)
class HistoryRow:
    id: int
    profile_id: int
    key: str
    entered_at: datetime
    entry_cause: str
    exited_at: datetime | None
    exit_cause: str


def audience_history(*, audience_id: int, before: int | None = None, limit: int = 100) -> list[HistoryRow]:
    """Stays in the audience, newest first (paged by id)."""
    q = Membership.objects.filter(audience_id=audience_id)
    if before is not None:
        q = q.filter(id__lt=before)
    rows = list(q.order_by("-id")[:limit])
    keys = dict(Profile.objects.filter(pk__in=[r.profile_id for r in rows]).values_list("pk", "key"))
    return [HistoryRow(r.id, r.profile_id, keys.get(r.profile_id, ""), r.entered_at, r.entry_cause, r.exited_at,
                       r.exit_cause) for r in rows]  # fmt: skip


@dataclass(frozen=True, slots=True)
class DaySize:
    date: str
    size: int  # members at the end of the day
    entered: int
    exited: int


def audience_sizes(*, audience_id: int, days: int = 90, now: datetime | None = None) -> list[DaySize]:
    """The size at the end of each of the last `days` days, with that day's entries and
    exits, oldest first: from the stored intervals (two indexed counts and two grouped
    scans of the period), never from recounting events."""
    now = now or timezone.now()
    today = now.astimezone(UTC).date()
    first = today - timedelta(days=days - 1)
    start = datetime.combine(first, time.min, tzinfo=UTC)
    stays = Membership.objects.filter(audience_id=audience_id)
    size = stays.filter(entered_at__lt=start).count() - stays.filter(exited_at__lt=start).count()
    entered = dict(
        stays.filter(entered_at__gte=start).annotate(day=TruncDate("entered_at", tzinfo=UTC))
        .values_list("day").annotate(n=Count("id")).values_list("day", "n")
    )  # fmt: skip
    exited = dict(
        stays.filter(exited_at__gte=start).annotate(day=TruncDate("exited_at", tzinfo=UTC))
        .values_list("day").annotate(n=Count("id")).values_list("day", "n")
    )  # fmt: skip
    out = []
    for i in range(days):
        day = first + timedelta(days=i)
        came, went = entered.get(day, 0), exited.get(day, 0)
        size += came - went
        out.append(DaySize(day.isoformat(), size, came, went))
    return out


def profile_audiences(*, profile_id: int) -> list[tuple[str, datetime]]:
    """(audience key, entered_at) of the audiences a profile is in now."""
    return list(
        AudienceMember.objects.filter(profile_id=profile_id)
        .order_by("audience__key")
        .values_list("audience__key", "entered_at")
    )
