"""Reading audiences: members now or at any past moment, the history of entries and exits,
sizes per day, and a profile's audiences."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from django.db import connection
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


def audience_sizes(*, audience_id: int, days: int = 90, now: datetime | None = None) -> list[tuple[str, int]]:
    """(date, size at the end of that day) for the last `days` days, oldest first, in one
    query over the history's intervals."""
    now = now or timezone.now()
    today = now.astimezone(UTC).date()
    day_end = datetime.max.time()
    ends = [datetime.combine(today - timedelta(days=i), day_end, tzinfo=UTC) for i in range(days - 1, -1, -1)]
    ends[-1] = min(ends[-1], now)
    table = Membership._meta.db_table
    if connection.vendor == "postgresql":
        sql = (
            f"SELECT d.at, (SELECT count(DISTINCT m.profile_id) FROM {table} m WHERE m.audience_id = %s "
            "AND m.entered_at <= d.at AND (m.exited_at IS NULL OR m.exited_at > d.at)) "
            "FROM unnest(%s::timestamptz[]) AS d(at) ORDER BY d.at"
        )
        params: list[Any] = [audience_id, ends]
    else:
        listed = "[" + ",".join(f'"{connection.ops.adapt_datetimefield_value(e)}"' for e in ends) + "]"
        sql = (
            f"SELECT d.value, (SELECT count(DISTINCT m.profile_id) FROM {table} m WHERE m.audience_id = %s "
            "AND m.entered_at <= d.value AND (m.exited_at IS NULL OR m.exited_at > d.value)) "
            "FROM json_each(%s) AS d ORDER BY d.value"
        )
        params = [audience_id, listed]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        counts = [int(row[1]) for row in cursor.fetchall()]
    return [(e.date().isoformat(), n) for e, n in zip(ends, counts, strict=True)]


def profile_audiences(*, profile_id: int) -> list[tuple[str, datetime]]:
    """(audience key, entered_at) of the audiences a profile is in now."""
    return list(
        AudienceMember.objects.filter(profile_id=profile_id)
        .order_by("audience__key")
        .values_list("audience__key", "entered_at")
    )
