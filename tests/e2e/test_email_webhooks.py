"""End to end through a live server: the URL `create_source` prints, pasted as a provider
would use it (Basic-auth credentials in the URL), a grouped Mailjet batch, and the events
on the profiles of the people in it; posting it again changes nothing. And the recipe for
replies: an inbound-mail hook posting `Email Replied` to the tracking API."""

from __future__ import annotations

from io import StringIO

import pytest
import requests
from django.core.management import call_command

from ingest.models import Source
from profiles.models import Event, Profile
from profiles.selectors import profile_events, profile_lookup
from tests.ingest.esp import mailjet_campaign

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def create_source(*args: str) -> str:
    out = StringIO()
    call_command("create_source", *args, stdout=out, stderr=StringIO())
    return out.getvalue().strip().splitlines()[-1]


def timeline(email: str) -> list[str]:
    profile = profile_lookup(kind="email", value=email)
    assert profile is not None, email
    events, _ = profile_events(profile_id=profile.pk, limit=100, oldest_first=True)
    return [e.event or e.type for e in events]


def test_grouped_mailjet_batch_to_the_printed_url_lands_on_each_persons_profile(live_server):
    url = create_source("Mailjet", "--kind", "mailjet", "--base-url", live_server.url)
    source = Source.objects.get(name="Mailjet")
    assert (
        url == live_server.url.replace("://", f"://cdp:{source.webhook_secret}@") + f"/v1/webhooks/mailjet/{source.pk}"
    )
    batch = mailjet_campaign()
    first = requests.post(url, json=batch, timeout=30)  # requests sends the URL's credentials as Basic auth
    assert first.status_code == 200 and first.json()["accepted"] == len(batch)

    assert timeline("reader0@example.com") == ["Email Delivered", "Email Opened", "Email Link Clicked", "Email Opened"]
    assert timeline("reader4@example.com") == ["Email Delivered", "Email Opened", "Email Link Clicked"]
    assert timeline("reader7@example.com") == ["Email Delivered", "Email Bounced"]
    assert timeline("reader9@example.com") == ["Email Delivered", "Unsubscribed"]
    reader4 = profile_lookup(kind="email", value="reader4@example.com")
    assert reader4 is not None and profile_lookup(kind="user_id", value="u_4") == reader4  # the passthrough id
    machine = Event.objects.get(profile=reader4, event="Email Opened")
    assert machine.properties["machine_open"] is True  # flagged, not dropped
    profiles, events = Profile.objects.filter(merged_into=None).count(), Event.objects.count()
    assert profiles == 10

    again = requests.post(url, json=batch, timeout=30)
    assert again.status_code == 200 and again.json()["accepted"] == len(batch)  # accepted, then dropped as duplicates
    assert (Profile.objects.filter(merged_into=None).count(), Event.objects.count()) == (profiles, events)
    wrong = requests.post(url.replace("cdp:", "cdp:x"), json=batch, timeout=30)
    assert wrong.status_code == 401 and Event.objects.count() == events


def test_reply_recipe_records_email_replied_through_the_tracking_api(live_server):
    """README, "Replies": an inbound hook (anymail's inbound signal, or any provider's
    inbound webhook) posts one track per reply to /v1/track; the sender's address in
    `context.traits.email` puts it on their profile, the reply's Message-ID dedups it."""
    key = create_source("Inbound mail")
    assert Source.objects.get(name="Inbound mail").kind == "http"
    reply = {
        "anonymousId": "alice.martin@example.com",
        "event": "Email Replied",
        "messageId": "reply-<CAF=x8Jk2pQ@mail.example.com>",
        "timestamp": "2025-03-14T15:02:00Z",
        "properties": {
            "email_subject": "Re: Spring sale starts now",
            "in_reply_to": "<20250314140000.1@mg.shop>",
            "campaign_name": "spring_sale_2025",
        },
        "context": {"traits": {"email": "alice.martin@example.com"}},
    }
    for _ in range(2):
        response = requests.post(f"{live_server.url}/v1/track", json=reply, auth=(key, ""), timeout=30)
        assert response.status_code == 200
    assert timeline("alice.martin@example.com") == ["Email Replied"]
