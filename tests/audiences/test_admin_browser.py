"""A marketer with only the audience permissions (and reading profiles, to open a member's
profile), in a real browser: builds seed audience 1 by clicking, sees the preview the API gives
for the same rule, saves it, sees the members and a member's profile, narrows the window to 90
days (a new version, a new size); then builds the funnel and an audience of audiences.
Screenshots go to test-artifacts/ (and the README's to docs/img/)."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from typing import Any

import orjson
import pytest
from django.contrib.auth.models import Permission
from django.test import Client

from audiences.models import Audience, AudienceVersion
from audiences.services import audience_preview
from profiles.services.tokens import access_token_create
from tests.audiences.conftest import members, page, track

pytestmark = [pytest.mark.browser, pytest.mark.e2e]
MARKETER = ("audiences.view_audience", "audiences.add_audience", "audiences.change_audience",
            "profiles.view_profile")  # fmt: skip
SEED_1 = {"all": [
    {"event": "Email Opened", "where": [{"property": "machine_open", "op": "!=", "value": True}],
     "window": {"within_days": 180}},
    {"not": {"event": "Order Completed", "window": {"within_days": 180}}},
    {"not": {"event": "Page Viewed", "window": {"within_days": 180}}},
]}  # fmt: skip


@pytest.fixture
def people(send):
    send(
        track("ann", "Email Opened", 10, machine_open=False), track("ann", "Email Opened", 3, machine_open=True),
        track("bob", "Email Opened", 5, machine_open=True),  # only a machine open
        track("cat", "Email Opened", 20), track("cat", "Order Completed", 2),
        track("dan", "Email Opened", 20), page("dan", 1),
        track("eve", "Email Opened", 200),  # too long ago
        track("lou", "Email Opened", 100),  # within 180 days, not 90
        track("fay", "Product Added", 3), track("fay", "Order Completed", 2.5),  # bought within 24 h
        track("gus", "Product Added", 3),  # abandoned
        track("hal", "Product Added", 0.2),  # too recent
    )  # fmt: skip
    identify = [{"type": "identify", "userId": who, "traits": {"email": f"{who}@shop.example", "name": who.title()}}
                for who in ("ann", "lou", "gus")]  # fmt: skip
    send(*identify)


@pytest.fixture
def marketer(live_server: Any, browser: Any, django_user_model: Any) -> Iterator[Callable[..., Any]]:
    """`marketer(path, width=1360)`: a Chromium page logged in as staff holding only MARKETER."""
    user = django_user_model.objects.create_user("marketer", "m@example.com", "a-long-password", is_staff=True)
    for perm in MARKETER:
        app, codename = perm.split(".")
        user.user_permissions.add(Permission.objects.get(content_type__app_label=app, codename=codename))
    contexts: list[Any] = []

    def _open(path: str, width: int = 1360) -> Any:
        context = browser.new_context(viewport={"width": width, "height": 1000})
        contexts.append(context)
        tab = context.new_page()
        tab.goto(f"{live_server.url}/admin/login/?next={path}")
        tab.fill("#id_username", "marketer")
        tab.fill("#id_password", "a-long-password")
        tab.click("input[type=submit]")
        tab.wait_for_url(f"{live_server.url}{path}")
        return tab

    yield _open
    for context in contexts:
        context.close()


def api_preview(rule: Any) -> dict[str, Any]:
    """The REST API's preview of a rule, as an integration would call it."""
    token = access_token_create(name="browser test", can_write=True)[1]
    response = Client().post("/api/v1/audiences/preview", data=orjson.dumps({"rule": rule}),
                             content_type="application/json", headers={"Authorization": f"Bearer {token}"})  # fmt: skip
    assert response.status_code == 200, response.content
    return response.json()


def wait_preview(tab: Any, size: int | None = None) -> int:
    """Wait until the preview answered for the rule as it stands (and shows `size`)."""
    tab.wait_for_function("() => !document.querySelector('.ab-preview').classList.contains('ab-busy')"
                          " && document.querySelector('.ab-status').textContent.startsWith('Counted')")  # fmt: skip
    if size is not None:
        tab.wait_for_function(f"() => document.querySelector('.ab-size').dataset.size === '{size}'")
    return int(tab.get_attribute(".ab-size", "data-size"))


def rule_in_form(tab: Any) -> Any:
    return json.loads(tab.input_value("textarea[name=rule]"))


def add_event(tab: Any, box: Any, name: str, *, days: int | None = None) -> Any:
    """Click "+ Event" in a group, name the event, and set "in the last N days"."""
    box.locator(":scope > .ab-add .ab-add-event").click()
    cond = box.locator(":scope > .ab-kids > .ab-cond").last
    cond.locator(".ab-event-name").first.fill(name)
    if days is not None:
        cond.locator(".ab-window").select_option("within")
        cond.locator(".ab-days").fill(str(days))
    return cond


def test_a_marketer_builds_seed_audience_1_by_clicking(marketer, people, artifacts, live_server):
    tab = marketer("/admin/audiences/audience/add/")
    tab.click("#toggle-nav-sidebar")  # more room for the builder (the admin remembers it)
    tab.fill("#id_name", "Dormant openers")
    tab.fill("#id_key", "dormant_openers")
    root = tab.locator(".ab-root")
    opened = add_event(tab, root, "Email Opened", days=180)
    opened.locator(".ab-add-where").click()
    where = opened.locator(".ab-filter").first
    where.locator(".ab-property").fill("machine_open")
    # The property's type comes from the data: a boolean, so "is not" / true.
    tab.wait_for_function("() => document.querySelector('.ab-filter .ab-type').value === 'boolean'")
    where.locator(".ab-op").select_option("!=")
    where.locator("select.ab-value").select_option("true")
    root.locator(":scope > .ab-add .ab-add-group").click()
    none_of = root.locator(":scope > .ab-kids > .ab-group").first
    none_of.locator(".ab-mode").first.select_option("none")
    none_of = root.locator(":scope > .ab-kids > .ab-group").first
    add_event(tab, none_of, "Order Completed", days=180)
    add_event(tab, none_of, "Page Viewed", days=180)

    size = wait_preview(tab, 2)  # ann and lou
    rule = rule_in_form(tab)
    api = api_preview(rule)
    assert size == api["size"] == audience_preview(data={"rule": SEED_1}).size == 2
    counts = {c["path"]: c["size"] for c in api["conditions"]}
    shown = {el.get_attribute("data-count-for"): int(el.get_attribute("data-n"))
             for el in tab.locator(".ab-count").all() if el.get_attribute("data-n")}  # fmt: skip
    # Beside every group and condition, its count by its path ("none of" shows who did none).
    assert {p: counts[p] for p in shown} == shown and len(shown) == 5
    assert shown["$.all[1]"] == 6  # of the 9 people, all but cat, dan and fay (they bought or visited)
    assert tab.locator(".ab-sample li").count() == 2
    assert "event('Email Opened').where(property('machine_open') != true).within(180 days)" in tab.inner_text(
        "#ab-query"
    )
    tab.screenshot(path=str(artifacts / "audience-builder.png"), full_page=True)

    tab.click("input[name=_save]")
    tab.wait_for_url(re.compile(r"/admin/audiences/audience/\d+/page/"))
    audience = Audience.objects.get(key="dormant_openers")
    assert audience.status == "live" and audience.size == 2 and audience.version == 1
    assert members("dormant_openers") == {"ann", "lou"}
    assert tab.inner_text("#audience-size") == "2"
    assert tab.locator("#members tbody tr").count() == 2
    tab.screenshot(path=str(artifacts / "audience-page.png"), full_page=True)

    tab.click("#members tbody tr[data-profile] a >> text=Ann")
    tab.wait_for_url(re.compile(r"/admin/profiles/profile/\d+/change/"))
    assert "Dormant openers" in tab.inner_text("#audiences")
    assert tab.locator("#audiences tr.au-in").count() == 1

    tab.goto(f"{live_server.url}/admin/audiences/audience/{audience.pk}/change/")
    days = tab.locator(".ab-days")
    assert days.count() == 3
    for i in range(3):
        days.nth(i).fill("90")
    wait_preview(tab, 1)
    tab.fill("#id_audit_reason", "Only the last quarter")
    tab.click("input[name=_save]")
    tab.wait_for_url(re.compile(r"/admin/audiences/audience/\d+/page/"))
    audience.refresh_from_db()
    assert audience.version == 2 and audience.size == 1 and members("dormant_openers") == {"ann"}
    assert tab.inner_text("#audience-size") == "1"
    assert "version 2" in tab.inner_text(".au-sub")
    v2 = AudienceVersion.objects.get(audience=audience, version=2)
    assert v2.author_name == "marketer" and v2.reason == "Only the last quarter"
    tab.goto(f"{live_server.url}/admin/audiences/audience/{audience.pk}/change/")
    assert tab.locator(".ab-version").count() == 2
    assert "+ All of" not in tab.inner_text(".ab-version >> nth=0")  # only what changed is marked
    assert "in the last 90 days" in tab.inner_text(".ab-version >> nth=0 >> .ab-diff-add >> nth=0")


def test_a_marketer_builds_the_funnel_and_an_audience_of_audiences(marketer, people, artifacts, define):
    define(key="dormant_openers", name="Dormant openers", rule=SEED_1)
    tab = marketer("/admin/audiences/audience/add/")
    tab.fill("#id_name", "Cart abandoners")
    tab.fill("#id_key", "cart_abandoners")
    cart = add_event(tab, tab.locator(".ab-root"), "Product Added")
    cart.locator(".ab-add-step").click()
    step = cart.locator(".ab-step").first
    assert step.locator(".ab-did").input_value() == "not"  # "and then did not do …", the usual funnel
    step.locator(".ab-step-event").fill("Order Completed")
    step.locator(".ab-hours").fill("24")
    assert wait_preview(tab, 1) == api_preview(rule_in_form(tab))["size"] == 1  # gus
    assert rule_in_form(tab) == {"event": "Product Added",
                                 "then": [{"event": "Order Completed", "within_hours": 24, "did": False}]}  # fmt: skip
    assert "event('Order Completed').within(parent: 1 day).count() = 0" in tab.inner_text("#ab-query")
    tab.screenshot(path=str(artifacts / "audience-builder-funnel.png"), full_page=True)
    tab.click("input[name=_save]")
    tab.wait_for_url(re.compile(r"/page/"))
    assert members("cart_abandoners") == {"gus"}

    tab.goto(tab.url.split("/admin/")[0] + "/admin/audiences/audience/add/")
    tab.fill("#id_name", "Dormant, not abandoning")
    tab.fill("#id_key", "dormant_not_abandoning")
    root = tab.locator(".ab-root")
    for key, member in (("dormant_openers", "in"), ("cart_abandoners", "out")):
        root.locator(":scope > .ab-add .ab-add-audience").click()
        cond = root.locator(":scope > .ab-kids > .ab-cond").last
        cond.locator(".ab-audience").select_option(key)
        cond.locator(".ab-member").select_option(member)
    assert wait_preview(tab, 2) == api_preview(rule_in_form(tab))["size"]
    assert rule_in_form(tab) == {"all": [{"audience": "dormant_openers", "member": True},
                                         {"audience": "cart_abandoners", "member": False}]}  # fmt: skip
    tab.click("input[name=_save]")
    tab.wait_for_url(re.compile(r"/page/"))
    assert members("dormant_not_abandoning") == {"ann", "lou"}
    audience = Audience.objects.get(key="dormant_not_abandoning")
    # On a narrow screen (a phone), the builder and the page fit without sideways scrolling.
    for path in (f"/admin/audiences/audience/{audience.pk}/change/", f"/admin/audiences/audience/{audience.pk}/page/"):
        small = marketer(path, width=420)
        if "change" in path:
            wait_preview(small, 2)
        wide = small.evaluate(
            "() => Array.from(document.querySelectorAll('body *'))"
            ".filter(e => e.getBoundingClientRect().right > 421).map(e => e.className)"
        )
        assert small.evaluate("document.documentElement.scrollWidth") <= 420, (path, wide)
    small.screenshot(path=str(artifacts / "audience-page-narrow.png"), full_page=True)


def test_a_rule_the_builder_cannot_show_is_kept_read_only_and_view_only_staff_only_see(
    marketer, people, define, live_server, browser, django_user_model
):
    odd = {"not": {"not": {"event": "Email Opened", "window": {"within_days": 180}}}}  # a double negation
    audience = define(key="openers", name="Openers", rule=odd)
    tab = marketer(f"/admin/audiences/audience/{audience.pk}/change/")
    assert tab.is_visible(".ab-frozen") and not tab.is_visible(".ab-tree")
    assert wait_preview(tab) == audience.size == 5  # still previewed, as it is
    tab.fill("#id_name", "Openers (all)")
    tab.fill("#id_audit_reason", "Clearer name")
    tab.click("input[name=_save]")
    tab.wait_for_url(re.compile(r"/page/"))
    audience.refresh_from_db()
    assert audience.rule == odd and audience.version == 1 and audience.name == "Openers (all)"

    viewer = django_user_model.objects.create_user("viewer", password="a-long-password", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_audience"))
    readonly = define(key="dormant_openers", name="Dormant openers", rule=SEED_1)
    context = browser.new_context(viewport={"width": 1360, "height": 900})
    try:
        look = context.new_page()
        look.goto(f"{live_server.url}/admin/login/?next=/admin/audiences/audience/{readonly.pk}/change/")
        look.fill("#id_username", "viewer")
        look.fill("#id_password", "a-long-password")
        look.click("input[type=submit]")
        look.wait_for_url(re.compile(r"/change/"))
        assert wait_preview(look, readonly.size) == readonly.size
        assert look.locator(".ab-cond").count() == 3 and look.locator(".ab-add-event").count() == 0
        assert look.locator(".ab-tree select:not([disabled]), .ab-tree input:not([disabled])").count() == 0
        assert look.locator("input[name=_save]").count() == 0
    finally:
        context.close()


def test_the_builder_starts_from_a_query_reorders_places_errors_and_never_waits_for_a_preview(marketer, people):
    tab = marketer("/admin/audiences/audience/add/")
    tab.fill("#id_name", "From Segment")
    tab.fill("#id_key", "from_segment")
    tab.click(".ab-paste-box summary")
    tab.fill(".ab-paste", "event('Email Opened').within(180 days).count() >= 1 AND trait('email').exists()")
    tab.click(".ab-paste-go")
    tab.wait_for_function("() => document.querySelectorAll('.ab-root > .ab-kids > .ab-cond').length === 2")
    assert wait_preview(tab, 2) == api_preview(rule_in_form(tab))["size"]  # ann and lou opened and have emails
    conds = tab.locator(".ab-root > .ab-kids > .ab-cond")
    assert conds.nth(1).locator(".ab-trait-key").input_value() == "email"

    conds.nth(1).locator(".ab-up").click()  # reorder: the trait first
    assert [next(iter(n)) for n in rule_in_form(tab)["all"]] == ["trait", "event"]
    tab.locator(".ab-root > .ab-kids > .ab-cond").nth(0).locator(".ab-remove").click()
    assert rule_in_form(tab) == {"all": [{"event": "Email Opened", "window": {"within_days": 180}}]}
    wait_preview(tab, 5)

    # A slow preview never blocks typing: each answer waits 1.5 s here, and typing goes on; only
    # the answer to the rule as it finally stands is shown.
    def slow(route: Any) -> None:
        import time

        time.sleep(1.5)
        route.continue_()

    tab.route("**/preview/", slow)
    days = tab.locator(".ab-days")
    days.fill("9")
    tab.wait_for_function("() => document.querySelector('.ab-preview').classList.contains('ab-busy')")
    days.press_sequentially("0")  # typed while the preview of 9 days is on its way
    assert days.input_value() == "90" and rule_in_form(tab)["all"][0]["window"] == {"within_days": 90}
    assert wait_preview(tab, 4) == api_preview(rule_in_form(tab))["size"]  # lou (100 days ago) is out
    tab.unroute("**/preview/")

    # A condition the server refuses: the error beside it, after saving too.
    tab.locator(".ab-root > .ab-add .ab-add-trait").click()
    trait = tab.locator(".ab-root > .ab-kids > .ab-cond").nth(1)
    trait.locator(".ab-trait-key").fill("no_such_trait")
    trait.locator(".ab-value").fill("x")
    tab.wait_for_function("() => document.querySelectorAll('.ab-trait .ab-error')[0].textContent.includes('Unknown')")
    tab.click("input[name=_save]")
    tab.wait_for_load_state()
    assert not Audience.objects.filter(key="from_segment").exists()
    error = tab.locator(".ab-root > .ab-kids > .ab-cond").nth(1).locator(":scope > .ab-error")
    assert "Unknown trait 'no_such_trait'" in error.inner_text()


def test_the_audience_page_plots_two_months_of_history_and_prints(marketer, people, define, artifacts):
    """Stays spread over 60 days (as months of real time leave them): the plot draws the size
    per day with entries and exits, its numbers agree with the members on a day, and the page
    prints (the PDF the browser makes of it holds the plot, without the admin's navigation)."""
    from datetime import timedelta

    from django.utils import timezone

    from audiences.models import AudienceMember, Membership
    from profiles.models import Profile

    audience = define(key="dormant_openers", name="Dormant openers", rule=SEED_1)
    now = timezone.now()
    names = ["Ada", "Ben", "Chloé", "Dev", "Emil", "Farah", "Goran", "Hana", "Ines", "Jun", "Kofi", "Lena"]
    folks = [
        Profile.objects.create(
            first_seen_at=now,
            last_seen_at=now,
            traits={"name": f"{names[i % 12]} {chr(65 + i // 12)}.", "email": f"person{i}@shop.example"},
        )
        for i in range(60)
    ]
    stays = []
    for n, person in enumerate(folks):
        entered = now - timedelta(days=60 - n, hours=n % 7)
        exited = entered + timedelta(days=5 + n % 9) if n % 3 == 0 else None
        stays.append(Membership(audience=audience, profile_id=person.pk, entered_at=entered,
                                exited_at=exited if exited and exited < now else None,
                                entry_cause="event Email Opened", exit_cause="event Order Completed"))  # fmt: skip
    Membership.objects.filter(audience=audience).delete()
    AudienceMember.objects.filter(audience=audience).delete()
    Membership.objects.bulk_create(stays)
    AudienceMember.objects.bulk_create(
        [
            AudienceMember(audience=audience, profile_id=m.profile_id, entered_at=m.entered_at)
            for m in stays
            if not m.exited_at
        ]
    )
    Audience.objects.filter(pk=audience.pk).update(size=AudienceMember.objects.filter(audience=audience).count())
    tab = marketer(f"/admin/audiences/audience/{audience.pk}/page/")
    chart = tab.locator("#audience-size-chart")
    assert chart.locator("rect.day").count() == 90
    assert chart.locator("rect.bar-entries").count() > 40 and chart.locator("rect.bar-exits").count() > 10
    day = (now - timedelta(days=20)).date().isoformat()
    size = int(chart.locator(f'rect.day[data-day="{day}"]').get_attribute("data-size"))
    response = tab.goto(f"{tab.url}?on={day}")
    assert response.status == 200, tab.content()[:3000]
    assert tab.locator("#members tbody tr[data-profile]").count() == min(size, 50) and size > 5
    tab.goto(tab.url.split("?")[0])
    tab.click("#toggle-nav-sidebar")  # more room for the page (the admin remembers it)
    tab.set_viewport_size({"width": 1280, "height": 1180})
    tab.evaluate("window.scrollTo(0, 0)")
    tab.screenshot(path=str(artifacts / "audience-page.png"))
    tab.emulate_media(media="print")
    assert not tab.is_visible("#nav-sidebar") and tab.is_visible("#audience-size-chart")
    pdf = tab.pdf(path=str(artifacts / "audience-page.pdf"))
    assert pdf.startswith(b"%PDF") and len(pdf) > 20_000
