"""A marketer in a real browser: log in, find a person, filter their timeline, open an event."""

from __future__ import annotations

import pytest

from tests.profiles.admin_demo import send_ana


@pytest.mark.browser
@pytest.mark.e2e
def test_marketer_finds_a_person_filters_the_timeline_and_expands_an_event(admin_browser, artifacts, send):
    send_ana(send)
    page = admin_browser("/admin/profiles/profile/")
    page.fill("#searchbar", "ana@lima.example")
    page.press("#searchbar", "Enter")
    page.click("#result_list th.field-key a")
    page.click("#toggle-nav-sidebar")  # more room for the page (the admin remembers it)
    assert page.inner_text("h1.pp-name") == "Ana Lima"
    assert page.locator("svg.identity-graph g.node").count() == 4
    assert page.locator("svg.identity-graph line.edge.merge").count() == 1
    page.screenshot(path=str(artifacts / "profile-page.png"), full_page=True)

    page.check("#timeline-filters input[value=track]")
    page.fill("#timeline-filters input[name=event]", "Email Opened, Email Link Clicked")
    page.click("#timeline-filters button[type=submit]")
    events = page.locator("li.pp-event")
    assert events.count() == 2
    assert page.locator("li.pp-merge-item").count() == 0
    opened = page.locator('li[data-message-id="m-opened"]')
    assert "Spring sale starts now" in opened.inner_text()
    json = opened.locator("pre.pp-json")
    assert not json.is_visible()
    opened.locator("summary").click()
    assert json.is_visible() and '"campaign_name": "spring_sale_2025"' in json.inner_text()
    page.screenshot(path=str(artifacts / "profile-timeline-filtered.png"), full_page=True)
