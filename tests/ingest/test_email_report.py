"""The email campaign report in the admin: the funnel with unique and total counts and
rates, bounces, complaints and unsubscribes, the plot with machine opens apart, and the
people behind each number; rendered in a real browser (its screenshot, `test-artifacts/campaign-report.png`, is the
README's `docs/img/campaign-report.png`)."""

from __future__ import annotations

import re

import orjson
import pytest

from ingest.webhooks import webhook_url
from profiles.email_report import email_campaign_people, email_campaign_report, email_campaigns
from tests.ingest.esp import BASE_URL, basic, mailjet_campaign, path_of, provider_source

pytestmark = pytest.mark.django_db


@pytest.fixture
def campaign(client, django_capture_on_commit_callbacks):
    source = provider_source("mailjet")
    url = webhook_url(source, base_url=BASE_URL)
    with django_capture_on_commit_callbacks(execute=True):  # the pipeline resolves the people
        response = client.post(path_of(url), data=orjson.dumps(mailjet_campaign()), content_type="application/json",
                               headers={"Authorization": basic(url)})  # fmt: skip
    assert response.status_code == 200 and response.json()["accepted"] == 23
    return "spring_sale_2025"


def by_key(metrics):
    return {m.key: (m.unique, m.total, None if m.rate is None else round(m.rate, 3)) for m in metrics}


def test_report_counts_people_and_events_with_machine_opens_apart(campaign):
    report = email_campaign_report(campaign=campaign)
    assert by_key(report.funnel) == {
        "sent": (0, 0, None),  # Mailjet reports acceptance by the receiving server: "delivered"
        "delivered": (10, 10, 1.0),  # over the people whose message had an outcome
        "opened": (4, 5, 0.4),
        "clicked": (2, 2, 0.2),
    }
    others = by_key(report.others)
    assert others["machine_opened"] == (2, 2, 0.2) and others["bot_clicked"] == (1, 1, 0.1)
    assert (others["bounced"][:2], others["complained"][:2], others["unsubscribed"][:2]) == ((1, 1), (1, 1), (1, 1))
    # Mailjet reports no sends: bounces are over the 10 people with a delivery or bounce, not a dash
    assert others["bounced"][2] == 0.1 and others["complained"][2] == 0.1
    assert report.bucket == "hour"
    assert sum(b.opens for b in report.series) == 5 and sum(b.machine_opens for b in report.series) == 2
    assert sum(b.clicks for b in report.series) == 2 and sum(b.bot_clicks for b in report.series) == 1
    assert [c.campaign for c in email_campaigns()] == ["spring_sale_2025"]


def test_each_number_leads_to_its_people(campaign):
    opened, count = email_campaign_people(campaign=campaign, metric="opened")
    assert count == 4
    assert {i.value for p in opened for i in p.identities.filter(kind="email")} == {
        f"reader{i}@example.com" for i in range(4)
    }
    machine, _ = email_campaign_people(campaign=campaign, metric="machine_opened")
    assert {i.value for p in machine for i in p.identities.filter(kind="email")} == {
        "reader4@example.com", "reader5@example.com"}  # fmt: skip
    users = {i.value for p in machine for i in p.identities.filter(kind="user_id")}
    assert users == {"u_4", "u_5"}  # the passthrough user id joined the same person


def test_admin_pages_link_every_number_to_its_people(admin_client, campaign):
    listing = admin_client.get("/admin/ingest/source/email-report/")
    assert listing.status_code == 200 and "spring_sale_2025" in listing.content.decode()
    page = admin_client.get("/admin/ingest/source/email-report/campaign/", {"campaign": campaign})
    html = page.content.decode()
    assert page.status_code == 200 and '<svg xmlns="http://www.w3.org/2000/svg" id="campaign-timeline"' in html
    links = re.findall(r'href="(/admin/ingest/source/email-report/people/\?[^"]+)"', html)
    assert len(links) == 11
    people = admin_client.get(links[2].replace("&amp;", "&"))  # opened
    assert people.status_code == 200 and people.content.decode().count("/admin/profiles/profile/") >= 4
    unknown = admin_client.get("/admin/ingest/source/email-report/people/", {"campaign": campaign, "metric": "nope"})
    assert unknown.status_code == 404


@pytest.mark.browser
@pytest.mark.e2e
def test_marketer_reads_the_campaign_report_in_a_browser(admin_browser, artifacts, campaign):
    page = admin_browser("/admin/ingest/source/", width=1280)
    page.click("text=Email campaigns")
    page.click("#email-campaigns a")
    assert page.inner_text("#email-funnel tr.metric-opened a.unique") == "4"
    assert page.inner_text("#email-funnel tr.metric-opened td.rate") == "40%"
    assert page.inner_text("#email-others tr.metric-machine_opened a.unique") == "2"
    assert page.locator("#campaign-timeline rect.bar-machine_opens").count() >= 1
    page.screenshot(path=str(artifacts / "campaign-report.png"), full_page=True)
    page.click("#email-funnel tr.metric-clicked a.unique")
    assert page.locator("#email-people tbody tr").count() == 2
