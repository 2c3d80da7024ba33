"""The marketer's pages for `bench/admin_pages.py`: audiences with a membership history, the
ingest counters, computed traits and the event names the builder offers, filled with SQL on
the benchmark's population (not timed); then the pages and endpoints to time.

Each audience's stays are spread over the last 120 days (entered by events, or by the rule's
first computation), a fifth of them exited later, as months of real time would leave them; the
current members and the stored size follow from the stays. Nothing here recounts events: the
pages under test read this history and the counters.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

SEED_1 = {"all": [
    {"event": "Email Opened", "where": [{"property": "machine_open", "op": "!=", "value": True}],
     "window": {"within_days": 180}},
    {"not": {"event": "Order Completed", "window": {"within_days": 180}}},
    {"not": {"event": "Page Viewed", "window": {"within_days": 180}}},
]}  # fmt: skip
# key, name, rule, one profile in `every` is a member at some time
AUDIENCES = [
    ("dormant_openers", "Dormant openers", SEED_1, 3),
    ("cart_abandoners", "Cart abandoners",
     {"event": "Product Added", "then": [{"event": "Order Completed", "within_hours": 24, "did": False}]}, 20),
    ("frequent_visitors", "Frequent visitors",
     {"event": "Page Viewed", "window": {"within_days": 30}, "count": {"op": ">=", "value": 5}}, 10),
    ("hot_leads", "Hot leads", {"trait": "lead_score", "op": ">", "value": 70}, 50),
    ("dormant_not_abandoning", "Dormant, not abandoning",
     {"all": [{"audience": "dormant_openers"}, {"audience": "cart_abandoners", "member": False}]}, 4),
    ("pro_plan", "On the pro plan", {"trait": "plan", "op": "=", "value": "pro"}, 3),
]  # fmt: skip

STAYS = """
INSERT INTO audiences_membership (audience_id, profile_id, entered_at, exited_at, entry_cause, exit_cause)
SELECT {audience}, p.id, s.entered,
       CASE WHEN p.id % 5 = 0 AND s.entered + (1 + p.id % 40) * interval '1 day' < now()
            THEN s.entered + (1 + p.id % 40) * interval '1 day' END,
       CASE WHEN p.id % 7 = 0 THEN 'rule v1' ELSE 'event Email Opened' END,
       CASE WHEN p.id % 5 = 0 AND s.entered + (1 + p.id % 40) * interval '1 day' < now()
            THEN (ARRAY['event Order Completed', 'time', 'trait lead_score'])[1 + p.id % 3] ELSE '' END
FROM profiles_profile p
CROSS JOIN LATERAL (SELECT now() - ((p.id * 7919) % (120 * 1440)) * interval '1 minute' AS entered) s
WHERE p.merged_into_id IS NULL AND p.id % {every} = 0"""


def fill_audiences() -> dict[str, int]:
    """Audiences with their history, counters, computed traits and event names (Django set up)."""
    from django.db import connection
    from django.utils import timezone

    from audiences.models import Audience, AudienceVersion
    from audiences.rules import parse_rule, rule_dependencies
    from ingest.models import IngestCounter, Source
    from profiles.models import ComputedTrait

    now = timezone.now()
    tables = [m._meta.db_table for m in (Audience, IngestCounter, ComputedTrait)] + ["profiles_eventname"]
    with connection.cursor() as cursor:  # the command role's limits: filling takes minutes
        cursor.execute("SET statement_timeout = 0")
        cursor.execute("SET lock_timeout = 0")
        cursor.execute(f"TRUNCATE {', '.join(tables)} CASCADE")  # again from scratch (--refill-audiences)
    source, _ = Source.objects.get_or_create(pk=1, defaults={"name": "Website"})
    hour = now.replace(minute=0, second=0, microsecond=0)
    IngestCounter.objects.bulk_create([
        IngestCounter(source=source, hour=hour - timedelta(hours=h), accepted=14_000 + 37 * h, duplicates=h % 9,
                      rejected=h % 13) for h in range(30 * 24)
    ])  # fmt: skip
    for key, name, kind in (("lead_score", "Lead score", "score"), ("orders_90d", "Orders, 90 days", "counter"),
                            ("favourite_category", "Favourite category", "most_frequent")):  # fmt: skip
        ComputedTrait.objects.create(key=key, name=name, type=kind, status="live", last_computed_at=now,
                                     profiles_with_value=250_000)  # fmt: skip
    ids = {}
    with connection.cursor() as cursor:
        names = "SELECT COALESCE(event, 'Page Viewed'), count(*), max(timestamp) FROM profiles_event GROUP BY 1"
        cursor.execute(f"INSERT INTO profiles_eventname (name, count, last_seen_at) {names}")
        for key, name, rule, every in AUDIENCES:
            deps = rule_dependencies(parse_rule(rule))
            audience = Audience.objects.create(
                key=key, name=name, rule=rule, status="live", last_computed_at=now, last_duration_ms=4_200,
                time_dependent=deps.time, depends_on={"events": sorted(deps.events), "traits": sorted(deps.traits),
                                                      "audiences": sorted(deps.audiences)},
            )  # fmt: skip
            AudienceVersion.objects.create(audience=audience, version=1, rule=rule, author_name="bench")
            cursor.execute(STAYS.format(audience=audience.pk, every=every))
            cursor.execute("INSERT INTO audiences_audiencemember (audience_id, profile_id, entered_at) SELECT "
                           "audience_id, profile_id, entered_at FROM audiences_membership WHERE audience_id = %s "
                           "AND exited_at IS NULL", [audience.pk])  # fmt: skip
            cursor.execute("UPDATE audiences_audience SET size = (SELECT count(*) FROM audiences_audiencemember "
                           "WHERE audience_id = %s) WHERE id = %s", [audience.pk, audience.pk])  # fmt: skip
            ids[key] = audience.pk
        cursor.execute("VACUUM ANALYZE audiences_membership")
        cursor.execute("VACUUM ANALYZE audiences_audiencemember")
    return ids


def cases() -> list[tuple[str, str, str | None]]:
    """(label, URL, reference SQL or None) of the marketer's pages, on the largest audience."""
    from django.utils import timezone

    from audiences.models import Audience, AudienceMember
    from audiences.selectors import audience_moves

    big = Audience.objects.order_by("-size").first()
    assert big is not None, "no audiences: run without --reuse first"
    member = AudienceMember.objects.filter(audience=big).order_by("profile_id")[5000:5001].get().profile_id
    from profiles.models import Profile

    email = Profile.objects.get(pk=member).traits["email"]
    after = AudienceMember.objects.filter(audience=big).order_by("profile_id")[49:50].get().profile_id
    cursor = audience_moves(audience_id=big.pk, limit=50)[-1].cursor
    day = (timezone.now() - timedelta(days=45)).date().isoformat()
    page = f"/admin/audiences/audience/{big.pk}/page/"
    members = "SELECT profile_id, entered_at FROM audiences_audiencemember WHERE audience_id = {} {} " \
              "ORDER BY profile_id LIMIT 51"  # fmt: skip
    return [
        ("home: the CDP overview", "/admin/", None),
        ("audience list (sizes, 30-day trends)", "/admin/audiences/audience/", None),
        (f"audience page ({big.size:,} members)", page, members.format(big.pk, "")),
        ("audience page, members page 2", f"{page}?after={after}", members.format(big.pk, f"AND profile_id > {after}")),
        ("audience page, search a member", f"{page}?q={email.replace('@', '%40')}", None),
        ("audience page, who was in 45 days ago", f"{page}?on={day}", None),
        ("audience page, history page 2", f"{page}?before={cursor.replace('+', '%2B').replace('|', '%7C')}", None),
        ("builder: the change page", f"/admin/audiences/audience/{big.pk}/change/", None),
        ("builder: properties of Email Opened", "/admin/audiences/audience/properties/?event=Email+Opened", None),
        ("profile page of a member (audiences)", f"/admin/profiles/profile/{member}/change/", None),
    ]


def previews() -> list[tuple[str, dict[str, Any]]]:
    """The builder's live preview (POST), over the whole event log: reported, not barred."""
    return [(f"preview: {name}", {"rule": rule}) for _, name, rule, _ in AUDIENCES]
