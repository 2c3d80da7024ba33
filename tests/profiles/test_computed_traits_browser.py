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
    page.locator(".field-event select.cta-pick").wait_for()  # shown once the builder's script has run
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


@pytest.mark.browser
@pytest.mark.e2e
def test_the_builder_shows_the_fields_of_the_type_and_the_properties_of_the_event(admin_browser, send):
    send(*[{"type": "track", "userId": who, "event": "Order Completed", "messageId": f"{who}-{i}",
            "timestamp": f"2026-11-2{i}T10:00:00Z", "properties": {"revenue": rev, "plan": plan}}
           for i, (who, rev, plan) in enumerate([("ana", 10, "pro"), ("ana", 25, "pro"), ("bo", 7, "team"),
                                                 ("cy", 99, "basic")])])  # fmt: skip
    page = admin_browser("/admin/profiles/computedtrait/add/")
    page.locator(".field-event select.cta-pick").wait_for()  # shown once the builder's script has run
    assert page.locator(".field-event").is_visible() and page.locator(".field-property").is_hidden()  # a counter
    page.select_option("#id_type", "sum")
    assert page.locator(".field-property").is_visible() and page.locator(".cta-score").is_hidden()

    main = page.locator(".cta-main")
    main.locator(".field-event select.cta-pick").select_option("Order Completed")
    prop = main.locator(".field-property select.cta-pick")
    prop.locator("option", has_text="revenue (on 4 recent events, e.g. 99, 7, 25, 10)").wait_for(state="attached")
    prop.select_option("revenue")
    main.locator("button.cta-add-filter").click()
    row = main.locator(".cta-filter")
    row.locator("select.cta-pick option", has_text="plan").wait_for(state="attached")
    row.locator("select.cta-pick").select_option("plan")
    row.locator("select.cta-op").select_option("one_of")
    assert row.locator("input.cta-value").get_attribute("placeholder") == "pro, team"
    row.locator("input.cta-value").fill("pro, team")

    page.click("#cta-preview-button")
    page.locator("#cta-preview-result").wait_for()
    assert page.inner_text("#cta-preview-profiles") == "2"  # ana (35) and bo (7); cy is on basic
    assert page.locator("#cta-preview-table td.cta-dist-value").all_inner_texts() == ["7", "35"]

    page.fill("#id_key", "spend")
    page.fill("#id_name", "Spend")
    page.click("input[name=_continue]")  # save and keep editing: the form comes back from what was stored
    page.wait_for_url("**/change/")
    page.locator(".field-event select.cta-pick").wait_for()  # the builder's script has run
    assert page.locator("#id_key").count() == 0 and "spend" in page.inner_text(".field-key")  # fixed now
    assert page.input_value("#id_type") == "sum"
    assert page.input_value(".field-event select.cta-pick") == "Order Completed"
    prop = page.locator(".field-property select.cta-pick")
    prop.locator("option", has_text="revenue (on").wait_for(state="attached")
    assert prop.input_value() == "revenue" and page.locator("#id_property").is_hidden()
    row = page.locator(".cta-main .cta-filter")
    assert row.locator("select.cta-op").input_value() == "one_of" and row.locator("input.cta-value").input_value() == (
        "pro, team"
    )

    # An event never seen yet can be typed: "Another event…" opens the text field.
    page.locator(".field-event select.cta-pick").select_option(label="Another event (type its name)…")
    assert page.locator("#id_event").is_visible()
    page.fill("#id_event", "Order Refunded")
    page.fill("#id_audit_reason", "refunds instead")
    page.click("input[name=_save]")
    assert ComputedTrait.objects.get(key="spend").spec["event"] == "Order Refunded"
