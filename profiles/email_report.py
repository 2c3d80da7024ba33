"""Reads for the email campaign report: per campaign, the funnel sent → delivered → opened →
clicked (total and unique people, with rates), bounces, complaints and unsubscribes, opens
and clicks over time with machine opens and bot clicks apart, and the people behind each
number.

A campaign is an email event's `properties.campaign_name`, or its `campaign_id` when it has
no name (providers' parsers fill these: Mailjet `customcampaign`/`CustomID`, SendGrid
marketing campaign or `campaign` custom arg, Mailgun campaign/variable/first tag, Mandrill
and Postmark tag, Braze campaign or canvas, Mailchimp `campaign_id`). Unique counts are
distinct profiles, so they follow merges; events not yet resolved count in totals only.
Reads go through the `(event, timestamp)` index of the event log.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db.models import BooleanField, Case, Count, Max, Min, Q, Value, When
from django.db.models.fields.json import KT
from django.db.models.functions import Coalesce, TruncDay, TruncHour

from profiles.models import Event, Profile


@dataclass(frozen=True, slots=True)
class MetricSpec:
    key: str
    label: str
    events: tuple[str, ...]
    machine: bool | None = None  # None: all; False: people only; True: machine opens / bot clicks only


METRICS: dict[str, MetricSpec] = {
    m.key: m
    for m in (
        MetricSpec("sent", "Sent", ("Email Sent",)),
        MetricSpec("delivered", "Delivered", ("Email Delivered",)),
        MetricSpec("opened", "Opened", ("Email Opened",), machine=False),
        MetricSpec("clicked", "Clicked", ("Email Link Clicked",), machine=False),
        MetricSpec("machine_opened", "Machine opens", ("Email Opened",), machine=True),
        MetricSpec("bot_clicked", "Bot clicks", ("Email Link Clicked",), machine=True),
        MetricSpec("bounced", "Bounced", ("Email Bounced",)),
        MetricSpec("dropped", "Dropped or blocked", ("Email Dropped", "Email Blocked")),
        MetricSpec("deferred", "Deferred", ("Email Deferred",)),
        MetricSpec("complained", "Marked as spam", ("Email Marked as Spam",)),
        MetricSpec("unsubscribed", "Unsubscribed", ("Unsubscribed", "Email Unsubscribed")),
    )
}
FUNNEL = ("sent", "delivered", "opened", "clicked")
OTHERS = ("machine_opened", "bot_clicked", "bounced", "dropped", "deferred", "complained", "unsubscribed")
# Events that say what became of a message once sent.
_OUTCOMES = ("Email Delivered", "Email Bounced", "Email Dropped", "Email Blocked", "Email Deferred")
EMAIL_EVENTS = tuple(sorted({name for m in METRICS.values() for name in m.events}))
# A campaign shorter than this is plotted per hour, longer ones per day.
HOURLY_SPAN = timedelta(days=3)
# At most this many bars (a year and a month of days): the plot stays readable and small.
MAX_BUCKETS = 400


@dataclass(frozen=True, slots=True)
class Metric:
    key: str
    label: str
    total: int
    unique: int
    rate: float | None  # unique people over the funnel step it is measured against, 0..1


@dataclass(frozen=True, slots=True)
class Bucket:
    at: datetime
    opens: int
    machine_opens: int
    clicks: int
    bot_clicks: int


@dataclass(frozen=True, slots=True)
class CampaignSummary:
    campaign: str
    events: int
    first_at: datetime | None
    last_at: datetime | None


@dataclass(frozen=True, slots=True)
class CampaignReport:
    campaign: str
    funnel: list[Metric]
    others: list[Metric]
    series: list[Bucket]
    bucket: str  # "hour" or "day"
    first_at: datetime | None
    last_at: datetime | None


def _email_events() -> Any:  # an annotated QuerySet[Event] (campaign, machine)
    key = Coalesce(KT("properties__campaign_name"), KT("properties__campaign_id"))
    machine = Case(
        When(Q(properties__machine_open=True) | Q(properties__bot_click=True), then=Value(True)),
        default=Value(False),
        output_field=BooleanField(),
    )
    return Event.objects.filter(type="track", event__in=EMAIL_EVENTS).annotate(campaign=key, machine=machine)


def email_campaigns(*, limit: int = 200) -> list[CampaignSummary]:
    """Campaigns with email events, most recent first."""
    rows = (
        _email_events()
        .exclude(campaign__isnull=True)
        .values("campaign")
        .annotate(n=Count("id"), first=Min("timestamp"), last=Max("timestamp"))
        .order_by("-last")[:limit]
    )
    return [CampaignSummary(r["campaign"], r["n"], r["first"], r["last"]) for r in rows]


def _of(campaign: str, spec: MetricSpec) -> Any:
    rows = _email_events().filter(campaign=campaign, event__in=spec.events)
    return rows if spec.machine is None else rows.filter(machine=spec.machine)


def email_campaign_report(*, campaign: str) -> CampaignReport:
    """The whole report of one campaign: one grouped count, one distinct count per metric,
    the time span and the time series (each through the `(event, timestamp)` index)."""
    counts: dict[tuple[str, bool], tuple[int, int]] = {}
    for row in (
        _email_events()
        .filter(campaign=campaign)
        .values("event", "machine")
        .annotate(total=Count("id"), unique=Count("profile_id", distinct=True))
    ):
        counts[(row["event"], row["machine"])] = (row["total"], row["unique"])
    uniques = _uniques(campaign)
    # Mailjet and Postmark report no sends: rates over "sent" are then over the people whose
    # message had an outcome (delivered, bounced, dropped, blocked or deferred).
    sent_base = "sent"
    if not uniques.get("sent"):
        sent_base = "reached"
        uniques["reached"] = (
            _email_events().filter(campaign=campaign, event__in=_OUTCOMES).exclude(profile_id__isnull=True)
            .values("profile_id").distinct().count()
        )  # fmt: skip

    def metric(key: str, base: str | None) -> Metric:
        spec = METRICS[key]
        total = sum(
            t for (event, machine), (t, _) in counts.items()
            if event in spec.events and (spec.machine is None or machine == spec.machine)
        )  # fmt: skip
        unique = uniques.get(key, 0)
        base_unique = uniques.get(base, 0) if base else 0
        return Metric(key, spec.label, total, unique, unique / base_unique if base_unique else None)

    delivered_base = "delivered" if uniques.get("delivered") else sent_base
    funnel = [
        metric("sent", None),
        metric("delivered", sent_base),
        metric("opened", delivered_base),
        metric("clicked", delivered_base),
    ]
    others = [metric(k, sent_base if k in ("bounced", "dropped", "deferred") else delivered_base) for k in OTHERS]
    span = _email_events().filter(campaign=campaign).aggregate(first=Min("timestamp"), last=Max("timestamp"))
    first, last = span["first"], span["last"]
    bucket = "hour" if first and last and last - first <= HOURLY_SPAN else "day"
    return CampaignReport(campaign, funnel, others, _series(campaign, bucket), bucket, first, last)


def _uniques(campaign: str) -> dict[str, int]:
    """Distinct people per metric (a person counted once even across machine and human)."""
    out = {}
    for key, spec in METRICS.items():
        out[key] = _of(campaign, spec).exclude(profile_id__isnull=True).values("profile_id").distinct().count()
    return out


def _series(campaign: str, bucket: str) -> list[Bucket]:
    trunc = TruncHour("timestamp") if bucket == "hour" else TruncDay("timestamp")
    rows = (
        _email_events()
        .filter(campaign=campaign, event__in=("Email Opened", "Email Link Clicked"))
        .annotate(at=trunc)
        .values("at", "event", "machine")
        .annotate(n=Count("id"))
        .order_by("at")
    )
    by_at: dict[datetime, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for row in rows:
        if row["event"] == "Email Opened":
            key = "machine_opens" if row["machine"] else "opens"
        else:
            key = "bot_clicks" if row["machine"] else "clicks"
        by_at[row["at"]][key] += row["n"]
    return [Bucket(at, c["opens"], c["machine_opens"], c["clicks"], c["bot_clicks"]) for at, c in sorted(by_at.items())]


def email_campaign_people(*, campaign: str, metric: str, limit: int = 500) -> tuple[list[Profile], int]:
    """The people behind one number of the report (first `limit`, by last seen), and how
    many there are. Raises KeyError for an unknown metric."""
    spec = METRICS[metric]
    ids = _of(campaign, spec).exclude(profile_id__isnull=True).values("profile_id").distinct()
    people = Profile.objects.filter(id__in=ids)
    return list(people.order_by("-last_seen_at", "id")[:limit]), people.count()


def metric_keys() -> Sequence[str]:
    return tuple(METRICS)
