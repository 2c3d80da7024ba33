"""The audiences admin through HTTP: saving through the services (versions, audit), validation
beside the node, permissions (a marketer builds, view-only staff only see), the builder's JSON
endpoints, the audience page (members now and on a day, search, history, a failed computation,
the destinations hook), the profile page's audiences, deletes."""

from __future__ import annotations

import json
from datetime import UTC, timedelta

import pytest
from django.core.cache import cache

from audiences import hooks
from audiences.models import Audience, AudienceVersion, Membership
from audit.models import AuditEntry
from profiles.models import Identity
from tests.audiences.conftest import MARKETER, members, page, track

pytestmark = pytest.mark.django_db
LIST = "/admin/audiences/audience/"
ADD = f"{LIST}add/"
OPENED = {"all": [
    {"event": "Email Opened", "window": {"within_days": 180}},
    {"not": {"event": "Order Completed", "window": {"within_days": 180}}},
]}  # fmt: skip


@pytest.fixture
def people(send):
    send(
        track("ann", "Email Opened", 10, campaign="spring"), track("bob", "Email Opened", 5, machine_open=True),
        track("cat", "Email Opened", 20), track("cat", "Order Completed", 2), page("dan", 1),
        {"type": "identify", "userId": "ann",
         "traits": {"email": "ann@shop.example", "name": "Ann Lima", "plan": "pro"}},
    )  # fmt: skip


def form(**fields):
    data = {"name": "Opened, not bought", "key": "opened_not_bought", "description": "", "rule": json.dumps(OPENED),
            "enabled": "on", "schedule_minutes": "15", "audit_reason": "", "_save": "Save"}  # fmt: skip
    data.update({k: (json.dumps(v) if k == "rule" else v) for k, v in fields.items()})
    return data


@pytest.fixture
def submit(django_capture_on_commit_callbacks):
    """POST as `client`, running what the commit hands over (the computation) as a worker would."""

    def _post(client, path, data, **kw):
        with django_capture_on_commit_callbacks(execute=True):
            return client.post(path, data, **kw)

    return _post


def test_a_marketer_builds_saves_and_changes_an_audience_through_the_services(people, staff, submit):
    marketer = staff(*MARKETER)
    response = submit(marketer, ADD, form())
    audience = Audience.objects.get(key="opened_not_bought")
    assert response.status_code == 302 and response["Location"] == f"{LIST}{audience.pk}/page/"
    assert audience.status == "live" and audience.size == 2 and members("opened_not_bought") == {"ann", "bob"}
    v1 = AudienceVersion.objects.get(audience=audience)
    assert (v1.version, v1.author, v1.author_name) == (1, marketer.user, marketer.user.username)
    added = AuditEntry.objects.get(action="add", target_type="audiences.audience")
    assert added.actor == marketer.user and added.changes["rule"][1] == OPENED

    change = f"{LIST}{audience.pk}/change/"
    narrower = {"all": [OPENED["all"][0], {"not": {"event": "Order Completed", "window": {"within_days": 180}}},
                        {"not": {"event": "Email Opened", "where": [{"property": "machine_open", "op": "=",
                                                                     "value": True}]}}]}  # fmt: skip
    refused = submit(marketer, change, form(rule=narrower))  # no reason
    assert refused.status_code == 200 and "This field is required" in refused.content.decode()
    assert Audience.objects.get(pk=audience.pk).version == 1
    response = submit(marketer, change, form(rule=narrower, audit_reason="No machine opens"))
    assert response.status_code == 302
    audience.refresh_from_db()
    assert audience.version == 2 and audience.size == 1 and members("opened_not_bought") == {"ann"}
    v2 = AudienceVersion.objects.get(audience=audience, version=2)
    assert v2.reason == "No machine opens" and v2.author == marketer.user
    changed = AuditEntry.objects.get(action="change")
    assert changed.reason == "No machine opens" and changed.changes["rule"] == [OPENED, narrower]

    # The same rule, spelled differently (defaults written out), and a new name: no new version.
    spelled = json.loads(json.dumps(narrower))
    spelled["all"][0]["count"] = {"op": ">=", "value": 1}
    submit(marketer, change, form(rule=spelled, name="Openers", audit_reason="Shorter name"))
    audience.refresh_from_db()
    assert audience.version == 2 and audience.name == "Openers"
    assert AuditEntry.objects.filter(action="change").count() == 2

    page_html = marketer.get(change).content.decode()
    assert page_html.count('class="ab-version"') == 2
    assert '<span class="ab-diff-add">+   Not: Email Opened where machine_open is true</span>' in page_html  # a diff


def test_an_error_is_shown_beside_the_node_it_names(people, staff, submit):
    marketer = staff(*MARKETER)
    bad = {"all": [OPENED["all"][0], {"trait": "no_such_trait", "op": "=", "value": 1}]}
    response = submit(marketer, ADD, form(rule=bad))
    html = response.content.decode()
    assert response.status_code == 200 and not Audience.objects.exists()
    assert 'data-error-path="rule.all[1]"' in html and "Unknown trait &#x27;no_such_trait&#x27;" in html
    assert json.loads(response.context["adminform"].form["rule"].value()) == bad  # kept as built


def test_view_only_staff_see_everything_and_change_nothing(people, staff, submit, define):
    audience = define(key="opened_not_bought", name="Opened", rule=OPENED)
    viewer = staff("audiences.view_audience")
    assert viewer.get(LIST).status_code == 200
    assert viewer.get(f"{LIST}{audience.pk}/page/").status_code == 200
    change = viewer.get(f"{LIST}{audience.pk}/change/")
    html = change.content.decode()
    assert change.status_code == 200 and 'data-readonly="1"' in html and 'name="_save"' not in html
    assert 'name="audit_reason"' not in html
    assert submit(viewer, f"{LIST}{audience.pk}/change/", form(audit_reason="x")).status_code == 403
    assert submit(viewer, ADD, form(key="other")).status_code == 403
    assert viewer.post(f"{LIST}{audience.pk}/compute/").status_code == 403
    assert viewer.post(f"{LIST}{audience.pk}/delete/", {"post": "yes", "audit_reason": "x"}).status_code == 403
    preview = viewer.post(f"{LIST}preview/", {"rule": OPENED}, content_type="application/json")
    assert preview.status_code == 200 and preview.json()["size"] == 2  # seeing who a rule admits is reading
    assert Audience.objects.get().version == 1 and not AuditEntry.objects.exists()

    nobody = staff("profiles.view_profile")
    for path in (LIST, f"{LIST}{audience.pk}/page/", f"{LIST}properties/?event=Email+Opened"):
        assert nobody.get(path).status_code == 403, path
    assert nobody.post(f"{LIST}preview/", {"rule": OPENED}, content_type="application/json").status_code == 403


def test_the_preview_endpoint_counts_every_node_and_links_people(people, staff):
    marketer = staff(*MARKETER)
    answer = marketer.post(f"{LIST}preview/", {"rule": OPENED}, content_type="application/json").json()
    assert answer["size"] == 2
    assert answer["conditions"] == {"$": 2, "$.all[0]": 3, "$.all[1]": 3, "$.all[1].not": 1}
    assert {p["label"] for p in answer["sample"]} == {"Ann Lima", Identity.objects.get(value="bob").profile.key}
    assert all(p["url"].startswith("/admin/profiles/profile/") for p in answer["sample"])
    assert answer["query"].startswith("event('Email Opened').within(180 days)")
    without_profiles = staff("audiences.view_audience")
    sample = without_profiles.post(f"{LIST}preview/", {"rule": OPENED}, content_type="application/json").json()
    assert {p["url"] for p in sample["sample"]} == {None}  # no link to a page they may not open
    bad = marketer.post(f"{LIST}preview/", {"rule": {"all": [{"event": "x", "count": {"op": "~", "value": 1}}]}},
                        content_type="application/json")  # fmt: skip
    assert bad.status_code == 400 and bad.json()["error"]["path"] == "rule.all[0].count.op"


def test_the_builder_is_offered_the_events_properties_traits_and_audiences_seen(people, staff, define):
    define(key="openers", name="Openers", rule={"event": "Email Opened"})
    marketer = staff(*MARKETER)
    props = marketer.get(f"{LIST}properties/", {"event": "Email Opened"}).json()["properties"]
    assert {(p["path"], p["type"]) for p in props} == {("campaign", "text"), ("machine_open", "boolean")}
    assert next(p for p in props if p["path"] == "campaign")["examples"] == ["spring"]
    catalog = marketer.get(ADD).context["adminform"].form.fields["rule"].widget.get_context("rule", "null", {})
    data = catalog["widget"]["catalog"]
    assert ("Email Opened", 3) in data["events"]
    assert {t["key"]: t["type"] for t in data["traits"]}["plan"] == "text"
    assert data["audiences"] == [("openers", "Openers", 3)]
    parsed = marketer.post(f"{LIST}query/", {"query": "trait('plan') = 'pro' AND audience('openers')"},
                           content_type="application/json")  # fmt: skip
    assert parsed.json()["rule"] == {"all": [{"trait": "plan", "op": "=", "value": "pro"},
                                             {"audience": "openers", "member": True}]}  # fmt: skip
    wrong = marketer.post(f"{LIST}query/", {"query": "event('x').count() >="}, content_type="application/json")
    assert wrong.status_code == 400 and "at 21" in wrong.json()["error"]["message"]


def test_the_audience_page_members_now_on_a_day_searched_and_the_history(people, staff, define, send):
    audience = define(key="opened_not_bought", name="Opened", rule=OPENED)
    entered = Membership.objects.filter(audience=audience).order_by("entered_at").first().entered_at
    send(track("bob", "Order Completed", 0))
    viewer = staff("audiences.view_audience", "profiles.view_profile")
    page_url = f"{LIST}{audience.pk}/page/"
    html = viewer.get(page_url).content.decode()
    assert 'id="audience-size">1<' in html and "Members now" in html
    assert "Ann Lima" in html and "/admin/profiles/profile/" in html
    assert html.count('class="day"') == 90 and "audience-size-chart" in html  # the plot, a day each
    assert "event Order Completed" in html and "rule v1" in html  # history with causes
    assert "Not synced to any destination." in html  # the destinations section, with none yet

    # As if both had entered three days ago and bob had left yesterday: two days ago both were in.
    Membership.objects.filter(audience=audience).update(entered_at=entered - timedelta(days=3))
    Membership.objects.filter(audience=audience, exited_at__isnull=False).update(exited_at=entered - timedelta(days=1))
    cache.clear()  # the past was rewritten (the product never does): forget the finished days' counts
    day = (entered - timedelta(days=2)).astimezone(UTC)
    then = viewer.get(page_url, {"on": day.date().isoformat()}).content.decode()
    assert then.count("data-profile=") == 2 and "Members on" in then  # at the end of that day
    before = viewer.get(page_url, {"on": (day - timedelta(days=2)).date().isoformat()}).content.decode()
    assert before.count("data-profile=") == 0 and "Nobody was in it then" in before
    html = viewer.get(page_url).content.decode()
    assert '<rect class="bar-exits"' in html and '<rect class="bar-entries"' in html
    found = viewer.get(page_url, {"q": "ann@shop.example"}).content.decode()
    assert found.count("data-profile=") == 1 and "Ann Lima" in found
    assert viewer.get(page_url, {"q": "nobody@x.example"}).content.decode().count("data-profile=") == 0


def test_a_failed_computation_shows_its_error_and_destinations_show_once_they_exist(people, staff, define):
    audience = define(key="openers", name="Openers", rule={"event": "Email Opened"})
    Audience.objects.filter(pk=audience.pk).update(status="failed", last_error="canceling statement due to timeout")
    viewer = staff("audiences.view_audience")
    html = viewer.get(f"{LIST}{audience.pk}/page/").content.decode()
    assert 'id="audience-error"' in html and "canceling statement due to timeout" in html
    registered = hooks._destinations  # the destinations app's lookup: put back after
    hooks.audience_destinations_register(lambda pk: [hooks.DestinationLink("Mailchimp list", "/x/", "syncing", None)])
    try:
        html = viewer.get(f"{LIST}{audience.pk}/page/").content.decode()
    finally:
        hooks._destinations = registered
    assert 'id="destinations"' in html and "Mailchimp list" in html


def test_the_profile_page_shows_the_audiences_a_person_is_in_and_was_in(people, staff, define, send):
    define(key="opened_not_bought", name="Opened, not bought", rule=OPENED)
    define(key="openers", name="Openers", rule={"event": "Email Opened"})
    send(track("ann", "Order Completed", 0))
    ann = Identity.objects.get(value="ann").profile_id
    html = staff("profiles.view_profile").get(f"/admin/profiles/profile/{ann}/change/").content.decode()
    section = html[html.index('id="audiences"') : html.index('id="traits"')]
    assert section.count('class="au-in"') == 1 and 'data-audience="openers"' in section
    assert section.count('class="au-was"') == 1 and "event Order Completed" in section
    assert "/admin/audiences/audience/" not in section  # no link without the audience permission


def test_deleting_asks_why_is_audited_and_refused_while_referenced(people, staff, submit, define):
    define(key="openers", name="Openers", rule={"event": "Email Opened"})
    users = define(key="not_openers", name="Not openers", rule={"not": {"audience": "openers"}})
    admin = staff("audiences.view_audience", "audiences.delete_audience")
    openers = Audience.objects.get(key="openers")
    refused = admin.post(f"{LIST}{openers.pk}/delete/", {"post": "yes", "audit_reason": "cleanup"})
    assert refused.status_code == 302 and Audience.objects.filter(key="openers").exists()
    submit(admin, f"{LIST}{users.pk}/delete/", {"post": "yes", "audit_reason": "not used"})
    assert not Audience.objects.filter(key="not_openers").exists()
    entry = AuditEntry.objects.get(action="delete")
    assert entry.actor == admin.user and entry.reason == "not used"


def test_the_audience_page_reads_a_fixed_number_of_queries(people, staff, define, send, django_assert_max_num_queries):
    audience = define(key="openers", name="Openers", rule={"event": "Email Opened"})
    viewer = staff("audiences.view_audience", "profiles.view_profile")
    with django_assert_max_num_queries(20):
        viewer.get(f"{LIST}{audience.pk}/page/")
    send(*[track(f"p{i}", "Email Opened", 1) for i in range(30)])
    with django_assert_max_num_queries(20):
        assert viewer.get(f"{LIST}{audience.pk}/page/").content.decode().count("data-profile=") == 33
    with django_assert_max_num_queries(20):
        viewer.get(LIST)
