"""The admin home is the CDP overview: events today (accepted, duplicates, rejected) from the
hourly counters, profiles, the pipeline's backlog and lag, audiences with sizes and trends,
computed traits, and what needs attention; the app list is one click away, and the header
names the product."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission, User
from django.test import Client
from django.utils import timezone

from audiences.models import Audience, Membership
from ingest.models import IngestCounter, Source
from profiles.models import ComputedTrait, EventBatch, Profile
from sqltraits.models import SqlTrait

pytestmark = pytest.mark.django_db


def _staff(*perms: str) -> Client:
    user = User.objects.create_user("ops", password="a-long-password", is_staff=True)
    for perm in perms:
        app, codename = perm.split(".")
        user.user_permissions.add(Permission.objects.get(content_type__app_label=app, codename=codename))
    client = Client()
    client.force_login(user)
    return client


def test_the_home_is_the_overview_and_names_the_product():
    now = timezone.now()
    hour = now.replace(minute=0, second=0, microsecond=0)
    web, app = Source.objects.create(name="Website"), Source.objects.create(name="Mobile app")
    IngestCounter.objects.create(source=web, hour=hour, accepted=1200, duplicates=7, rejected=3)
    IngestCounter.objects.create(source=app, hour=hour, accepted=40, rejected=60)  # failing: 60% refused
    IngestCounter.objects.create(source=web, hour=hour - timedelta(days=2), accepted=999)  # not today
    for _ in range(3):
        Profile.objects.create(first_seen_at=now, last_seen_at=now)
    EventBatch.objects.create(source_id=web.pk, received_at=now - timedelta(minutes=9), size=100, payload=b"")
    vip = Audience.objects.create(key="vip", name="VIPs", rule={}, size=2, status="live")
    Membership.objects.bulk_create([Membership(audience=vip, profile_id=i, entered_at=now - timedelta(days=i),
                                               entry_cause="rule v1") for i in (1, 2)])  # fmt: skip
    Audience.objects.create(key="broken", name="Broken", rule={}, status="failed", last_error="statement timeout")
    ComputedTrait.objects.create(key="lead_score", name="Lead score", type="score", profiles_with_value=2)
    ComputedTrait.objects.create(key="broken_sum", name="Broken sum", type="sum", status="failed", last_error="boom")
    SqlTrait.objects.create(key="ltv", name="Lifetime value", query="SELECT 1", last_status="failed",
                            last_error="relation \"orders\" does not exist",
                            source=Source.objects.create(name="SQL: ltv", kind="sql"))  # fmt: skip

    client = _staff("audiences.view_audience")
    html = client.get("/admin/").content.decode()
    assert "<title>Overview | CDP</title>" in html and "Django administration" not in html
    assert 'id="today-accepted">1,240<' in html and 'id="today-duplicates">7<' in html
    assert 'id="today-rejected" class="ov-bad">63<' in html
    assert 'id="profile-count">3<' in html
    assert 'id="backlog">100<' in html and "9\xa0minutes" in html  # the lag: the oldest batch waiting
    assert 'data-audience="vip"' in html and 'class="sparkline"' in html and "0 to 2 (+2) over 30 days" in html
    assert "Lead score" in html
    problems = html[html.index('id="problems"') : html.index('id="events-today"')]
    assert "Mobile app" in problems and "60 of 100 messages refused" in problems
    assert "Broken" in problems and "statement timeout" in problems
    assert "100 messages wait" in problems  # behind by more than 5 minutes
    assert "Broken sum" in problems and "boom" in problems and "/admin/profiles/computedtrait/" in problems
    assert "Lifetime value" in problems and "does not exist" in problems
    assert "Website" not in problems
    assert 'href="/admin/apps/"' in html
    apps = client.get("/admin/apps/").content.decode()
    assert "Apps and models" in apps and "/admin/audiences/audience/" in apps


def test_a_quiet_system_needs_nothing():
    html = _staff().get("/admin/").content.decode()
    assert "Nothing: sources are sending" in html and "No audience yet." in html
