"""A marketer builds a lead score in a real browser: picks the events from those seen, adds a
rule, previews the values, saves with a reason, and reads the score on the person's page."""

from __future__ import annotations

import pytest

from audit.models import AuditEntry
from profiles.models import ComputedTrait, Identity
from tests.profiles.admin_demo import send_ana


def _opened(who: str, n: int) -> list[dict]:
    return [{"type": "track", "userId": who, "event": "Email Opened", "timestamp": f"2026-11-20T10:0{i}:00Z",
             "messageId": f"{who}-open-{i}", "properties": {"campaign_name": "winter"}} for i in range(n)]  # fmt: skip


@pytest.mark.browser
@pytest.mark.e2e
def test_marketer_builds_previews_and_saves_a_lead_score(admin_browser, artifacts, send):
    send_ana(send)  # one open, one click, an order
    send(*_opened("bo-7", 3))
    page = admin_browser("/admin/profiles/computedtrait/add/")
    page.fill("#id_key", "lead_score")
    page.fill("#id_name", "Lead score")
    page.select_option("#id_type", "score")
    assert page.locator("#id_event").is_hidden()  # a score has rules, not one event
    rules = page.locator(".cta-rule")
    assert rules.count() == 1

    # The events seen are offered with their counts: bo's three opens and Ana's one.
    first = rules.nth(0)
    offered = first.locator("select.cta-pick option").all_inner_texts()
    assert "Email Opened (4 events)" in offered
    first.locator("select.cta-pick").select_option("Email Opened")
    first.locator("input.cta-points").fill("1")

    page.click("button.cta-add-rule")
    assert rules.count() == 2
    second = rules.nth(1)
    second.locator("select.cta-pick").select_option("Email Link Clicked")
    second.locator("input.cta-points").fill("5")
    # A filter on the click rule: its property is picked from those seen on Email Link Clicked.
    second.locator("button.cta-add-filter").click()
    row = second.locator(".cta-filter")
    row.locator("select.cta-pick option", has_text="campaign_name").wait_for(state="attached")
    row.locator("select.cta-pick").select_option("campaign_name")
    row.locator("select.cta-op").select_option("exists")
    assert row.locator("input.cta-value").is_hidden()  # exists takes no value

    page.click("#cta-preview-button")
    result = page.locator("#cta-preview-result")
    result.wait_for()
    assert page.inner_text("#cta-preview-profiles") == "2"
    table = page.inner_text("#cta-preview-table")
    assert "3" in table and "6" in table  # bo: 3 opens; Ana: 1 open + 5 for the click
    assert not ComputedTrait.objects.exists()  # a preview saves nothing
    page.screenshot(path=str(artifacts / "computed-trait-builder.png"), full_page=True)

    page.fill("#id_audit_reason", "Sales asked for a lead score")
    page.click("input[name=_save]")
    assert "was added successfully" in page.inner_text(".messagelist")
    listed = page.inner_text("#result_list")
    assert "lead_score" in listed and "Score" in listed and "Live" in listed
    entry = AuditEntry.objects.get(target_type="profiles.computedtrait", action="add")
    assert entry.reason == "Sales asked for a lead score" and entry.actor_name == "marketer"

    ana = Identity.objects.get(kind="user_id", value="ana-1042").profile_id
    page.goto(page.url.split("/admin/")[0] + f"/admin/profiles/profile/{ana}/change/")
    card = page.locator("#computed-traits")
    row = card.locator("tr[data-key=lead_score]")
    assert row.locator("td.pp-value").inner_text() == "6"
    assert "+1 per Email Opened; +5 per Email Link Clicked where campaign_name exists" in row.inner_text()
    assert "Lead score" not in page.inner_text("#traits")  # computed traits apart from custom ones
    card.screenshot(path=str(artifacts / "profile-computed-traits.png"))
