"""The admin home: what a marketer and an operator look at first. Each part reads stored
counters and history through its app's selectors, never the event log: events today from the
hourly ingest counters, profiles from the planner's estimate, the pipeline's backlog from the
batches waiting, audience sizes and trends from their membership history."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.urls import NoReverseMatch, reverse
from django.utils import timezone

from audiences.charts import sparkline_svg
from audiences.models import Audience
from audiences.selectors import audiences_days
from destinations.selectors import destinations_failing
from ingest.selectors import Today, ingest_today, sources_failing
from profiles.counting import queryset_count_estimate
from profiles.models import ComputedTrait, Profile
from profiles.selectors import Backlog, pipeline_backlog
from profiles.services.feed import ConsumerLag, feed_lag
from sqltraits.models import SqlTrait, SqlTraitRun

AUDIENCES_SHOWN, TRAITS_SHOWN, TREND_DAYS = 12, 12, 30
# The pipeline or a change-feed consumer this far behind is a problem worth showing.
BEHIND = timedelta(minutes=5)


@dataclass(frozen=True, slots=True)
class Problem:
    what: str  # "source", "pipeline", "audience", "computed trait", "destination"
    name: str
    detail: str
    url: str


@dataclass(frozen=True)
class Overview:
    today: Today
    profiles: tuple[int, bool]  # (count, exact)
    backlog: Backlog
    lag: timedelta | None  # since the oldest batch waiting was received
    feed: list[ConsumerLag]
    audiences: list[tuple[Audience, str]]  # (audience, its trend's sparkline)
    audience_count: int
    traits: list[ComputedTrait]
    trait_count: int
    problems: list[Problem] = field(default_factory=list)


def overview(*, now: datetime | None = None) -> Overview:
    now = now or timezone.now()
    backlog = pipeline_backlog()
    lag = now - backlog.oldest_received_at if backlog.oldest_received_at else None
    feed = feed_lag()
    audiences = list(Audience.objects.order_by("-size", "key")[:AUDIENCES_SHOWN])
    days = audiences_days(audience_ids=[a.pk for a in audiences], days=TREND_DAYS)  # the present: cached days
    traits = list(ComputedTrait.objects.order_by("-profiles_with_value", "key")[:TRAITS_SHOWN])
    return Overview(
        today=ingest_today(now=now),
        profiles=queryset_count_estimate(Profile.objects.filter(merged_into__isnull=True), exact_up_to=10_000),
        backlog=backlog, lag=lag, feed=feed,
        audiences=[(a, sparkline_svg([d.size for d in days[a.pk]])) for a in audiences],
        audience_count=Audience.objects.count(),
        traits=traits, trait_count=ComputedTrait.objects.count(),
        problems=problems(now=now, backlog=backlog, lag=lag, feed=feed),
    )  # fmt: skip


def problems(*, now: datetime, backlog: Backlog, lag: timedelta | None, feed: list[ConsumerLag]) -> list[Problem]:
    """What needs attention: failing sources, a pipeline or feed behind, failed computations
    (audiences, computed traits, SQL traits' runs) and failing destinations."""
    out = [
        Problem("source", p.source.name, p.problem, reverse("admin:ingest_source_debugger", args=[p.source.pk]))
        for p in sources_failing(now=now)
    ]
    debugger = reverse("admin:ingest_debugger")
    if lag is not None and lag > BEHIND:
        out.append(Problem("pipeline", "Pipeline", f"{backlog.messages:,} messages wait, the oldest since "
                           f"{_ago(lag)}: are the workers running?", debugger))  # fmt: skip
    if backlog.parked:
        out.append(Problem("pipeline", "Pipeline", f"{backlog.parked:,} batches parked after failing", debugger))
    for c in feed:
        if c.oldest_waiting_at is not None and now - c.oldest_waiting_at > BEHIND:
            out.append(Problem("pipeline", f"Real-time {c.name.replace('_', ' ')}",
                               f"{c.behind:,} changes wait, the oldest since {_ago(now - c.oldest_waiting_at)}",
                               debugger))  # fmt: skip
    for a in Audience.objects.filter(status=Audience.Status.FAILED).order_by("key"):
        out.append(Problem("audience", a.name, a.last_error or "the last computation failed",
                           reverse("admin:audiences_audience_page", args=[a.pk])))  # fmt: skip
    for t in ComputedTrait.objects.filter(status=ComputedTrait.Status.FAILED).order_by("key"):
        out.append(Problem("computed trait", t.name, t.last_error or "the last computation failed",
                           admin_url("admin:profiles_computedtrait_change", t.pk)))  # fmt: skip
    for q in SqlTrait.objects.filter(enabled=True, last_status=SqlTraitRun.Status.FAILED).order_by("key"):
        out.append(Problem("SQL trait", q.name, q.last_error or "the last run failed",
                           admin_url("admin:sqltraits_sqltrait_change", q.pk)))  # fmt: skip
    out += failing_destinations(now=now)
    return out


def failing_destinations(*, now: datetime | None = None) -> list[Problem]:
    """The destinations whose deliveries fail (dead rows in the last day, or retrying since
    their last success), each with its last error and a link to its delivery log."""
    return [
        Problem("destination", h.destination.name, h.destination.last_error or f"{h.dead:,} dead deliveries",
                admin_url("admin:destinations_destination_deliveries", h.destination.pk))
        for h in destinations_failing(now=now)
    ]  # fmt: skip


def admin_url(name: str, *args: object) -> str:
    """A page's URL, or "" while no admin serves it (the computed traits admin is another
    branch's work)."""
    try:
        return reverse(name, args=args)
    except NoReverseMatch:
        return ""


def _ago(delta: timedelta) -> str:
    minutes = int(delta.total_seconds() // 60)
    return f"{minutes} min ago" if minutes < 120 else f"{minutes // 60} h ago"
