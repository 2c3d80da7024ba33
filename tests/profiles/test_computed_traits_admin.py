"""The computed traits admin through the test client: the builder's forms (every type family,
filters and score rules as rows, errors on the field they concern), the key fixed once made,
the preview (the values a real compute then stores, nothing written), the list and its
"Recompute now", and computed traits on the profile page."""

from __future__ import annotations

from datetime import timedelta
from html import unescape
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.utils import timezone

from audit.models import AuditEntry
from profiles.computed.selectors import trait_distribution
from profiles.models import ComputedTrait, ComputedTraitChange, ComputedTraitValue, Identity, ProfileChange
from tests.conftest import PipelineClient
from tests.profiles.html_text import input_names, page_text, text_of, texts

pytestmark = pytest.mark.django_db
NOW = timezone.now()
LIST = "/admin/profiles/computedtrait/"
ADD = f"{LIST}add/"
PREVIEW = f"{LIST}preview/"
PROPERTIES = f"{LIST}properties/"


def ago(days: float) -> str:
    return (NOW - timedelta(days=days)).isoformat().replace("+00:00", "Z")


def track(who: str, event: str, days: float, **properties: Any) -> dict[str, Any]:
    return {"type": "track", "userId": who, "event": event, "timestamp": ago(days), "properties": properties}


@pytest.fixture
def shop(send):
    send(
        track("ana", "Order Completed", 2, revenue=10, plan="basic", category="shoes"),
        track("ana", "Order Completed", 40, revenue=20.5, plan="pro", category="hats"),
        track("ana", "Order Completed", 120, revenue="30", plan="pro", category="shoes"),
        track("ana", "Email Opened", 1, campaign="winter"),
        track("ana", "Email Opened", 3, campaign="winter", machine_open=True),
        track("bo", "Order Completed", 5, revenue="n/a", plan="team", category="bags"),
        track("bo", "Order Completed", 6, revenue=-3, plan="team", category="bags"),
        track("bo", "Email Link Clicked", 4, campaign="winter", link_url="https://shop.example/sale"),
        {"type": "identify", "userId": "cy", "traits": {"plan": "pro"}, "timestamp": ago(1)},
    )


@pytest.fixture
def admin(db) -> PipelineClient:
    User.objects.create_superuser("marketer", "m@example.com", "pw")
    client = PipelineClient()  # runs what commits queue (the recompute) as a worker would
    client.login(username="marketer", password="pw")
    return client


def form(key: str = "t", **fields: Any) -> dict[str, Any]:
    """A builder POST: the trait's own fields, then the definition's."""
    return {"key": key, "name": key.replace("_", " ").capitalize(), "description": "", "schedule_hours": "1",
            "enabled": "on", **fields}  # fmt: skip


def values(key: str) -> dict[str, Any]:
    out = {}
    for v in ComputedTraitValue.objects.filter(trait__key=key):
        out[Identity.objects.get(profile_id=v.profile_id, kind="user_id").value] = v.value
    return out


# --- the forms: every type family, filters and rules as rows -----------------------------------

VALID = [
    pytest.param(
        {"type": "counter", "event": "Order Completed", "window_days": "90", "property": "left over from a sum",
         "where-0-property": "revenue", "where-0-op": ">", "where-0-value": "0",
         "where-3-property": "", "where-3-op": "=", "where-3-value": ""},  # an empty row is no filter
        {"type": "counter", "event": "Order Completed", "property": None, "window_days": 90,
         "where": [{"property": "revenue", "op": ">", "value": 0}]},
        {"ana": 2}, id="counter",
    ),
    pytest.param(
        {"type": "sum", "event": "Order Completed", "property": "revenue", "window_days": "",
         "where-0-property": "plan", "where-0-op": "one_of", "where-0-value": "pro, team"},
        {"type": "sum", "event": "Order Completed", "property": "revenue", "window_days": None,
         "where": [{"property": "plan", "op": "one_of", "value": ["pro", "team"]}]},
        {"ana": 50.5, "bo": -3}, id="sum",
    ),
    pytest.param(
        {"type": "most_frequent", "event": "Order Completed", "property": "category", "min_frequency": "2"},
        {"type": "most_frequent", "event": "Order Completed", "property": "category", "window_days": None,
         "where": [], "min_frequency": 2},
        {"ana": "shoes", "bo": "bags"}, id="most_frequent",
    ),
    pytest.param(
        {"type": "unique_list", "event": "Order Completed", "property": "category",
         "where-0-property": "plan", "where-0-op": "!=", "where-0-value": '"team"'},
        {"type": "unique_list", "event": "Order Completed", "property": "category", "window_days": None,
         "where": [{"property": "plan", "op": "!=", "value": "team"}]},
        {"ana": ["hats", "shoes"]}, id="unique_list",
    ),
    pytest.param(
        {"type": "score", "half_life_days": "", "window_days": "30", "event": "ignored for a score",
         "rules-0-event": "Email Opened", "rules-0-points": "1",
         "rules-0-where-0-property": "machine_open", "rules-0-where-0-op": "!=", "rules-0-where-0-value": "true",
         "rules-2-event": "Email Link Clicked", "rules-2-points": "5",
         "rules-2-where-5-property": "link_url", "rules-2-where-5-op": "contains", "rules-2-where-5-value": "sale",
         "rules-4-event": "", "rules-4-points": ""},  # an empty rule is no rule
        {"type": "score", "half_life_days": None, "window_days": 30, "rules": [
            {"event": "Email Opened", "points": 1.0,
             "where": [{"property": "machine_open", "op": "!=", "value": True}]},
            {"event": "Email Link Clicked", "points": 5.0,
             "where": [{"property": "link_url", "op": "contains", "value": "sale"}]}]},
        {"ana": 1, "bo": 5}, id="score",
    ),
]  # fmt: skip


@pytest.mark.parametrize(("fields", "definition", "expected"), VALID)
def test_each_type_is_built_from_the_form_and_computed(shop, admin, fields, definition, expected):
    response = admin.post(ADD, form("t", **fields, audit_reason="for the spring campaign"))
    assert response.status_code == 302, page_text(response.content.decode())
    trait = ComputedTrait.objects.get(key="t")
    assert {"type": trait.type, **trait.spec} == definition  # what the API would have stored
    numbers = all(isinstance(v, int | float) for v in expected.values())
    assert trait.status == "live" and (values("t") == pytest.approx(expected) if numbers else values("t") == expected)
    entry = AuditEntry.objects.get(target_type="profiles.computedtrait", target_id=str(trait.pk))
    assert (entry.action, entry.actor_name, entry.reason) == ("add", "marketer", "for the spring campaign")


def _errors_in(html: str, **where: str) -> str:
    """The error messages a reader sees inside one part of the form."""
    return " ".join(texts(text_of_block(html, **where), cls="errorlist"))


def text_of_block(html: str, **where: str) -> str:
    """The raw HTML of the first element matching `where` (for a look inside it)."""
    import re

    ((attr, value),) = where.items()
    attr = "class" if attr == "cls" else attr
    m = re.search(rf'<(\w+)[^>]*\s{attr}="[^"]*\b{re.escape(value)}\b[^"]*"', html)
    assert m, f"no {where}"
    tag, depth, at = m.group(1), 0, m.start()
    for t in re.finditer(rf"<(/?){tag}\b[^>]*>", html[at:]):
        depth += -1 if t.group(1) else 1
        if not depth:
            return html[at : at + t.end()]
    raise AssertionError("unclosed")


INVALID = [
    pytest.param({"type": "sum", "event": "Order Completed"}, {"cls": "field-property"},
                 "A sum trait reads a property", id="sum without a property"),
    pytest.param({"type": "counter", "event": ""}, {"cls": "field-event"}, "The event name is required",
                 id="no event"),
    pytest.param({"type": "counter", "event": "Order Completed", "window_days": "0"}, {"cls": "field-window_days"},
                 "greater than 0", id="a window of 0 days"),
    pytest.param({"type": "counter", "event": "Order Completed", "where-0-property": "revenue", "where-0-op": ">",
                  "where-0-value": ""}, {"cls": "cta-filter"}, "Value: > compares with a number or a string",
                 id="a filter without its value"),
    pytest.param({"type": "counter", "event": "Order Completed", "where-0-property": "", "where-0-op": "=",
                  "where-0-value": "x"}, {"cls": "cta-filter"}, "Property: The property to filter on is required",
                 id="a filter without its property"),
    pytest.param({"type": "counter", "event": "Order Completed", "where-0-property": "at", "where-0-op": "after_date",
                  "where-0-value": "yesterday"}, {"cls": "cta-filter"}, "after_date takes an ISO 8601 date",
                 id="a date that is not one"),
    pytest.param({"type": "score"}, {"cls": "field-rules"}, "A score needs 1 to 50 rules", id="a score without rules"),
    pytest.param({"type": "score", "rules-0-event": "Email Opened", "rules-0-points": "many"}, {"cls": "cta-rule"},
                 "Points: Enter a number", id="points that are not a number"),
    pytest.param({"type": "score", "rules-0-event": "", "rules-0-points": "3"}, {"cls": "cta-rule"},
                 "Event: The event name is required", id="a rule without its event"),
    pytest.param({"type": "score", "rules-0-event": "Email Opened", "rules-0-points": "3",
                  "rules-0-where-0-property": "campaign", "rules-0-where-0-op": "one_of", "rules-0-where-0-value": ""},
                 {"cls": "cta-rule-where"}, "one_of takes a non-empty list", id="a rule's filter"),
    pytest.param({"type": "score", "rules-0-event": "Email Opened", "rules-0-points": "1", "half_life_days": "-2"},
                 {"cls": "field-half_life_days"}, "greater than 0", id="a negative half-life"),
]  # fmt: skip


@pytest.mark.parametrize(("fields", "where", "message"), INVALID)
def test_a_bad_definition_is_refused_with_the_error_on_its_field(shop, admin, fields, where, message):
    response = admin.post(ADD, form("t", **fields))
    assert response.status_code == 200
    html = response.content.decode()
    assert "The definition needs fixing" in page_text(html)
    assert message in _errors_in(html, **where)
    assert not ComputedTrait.objects.exists()
    # What was typed is still there to fix.
    typed = unescape(html)
    for name, value in fields.items():
        if name == "type" or name.endswith("-op"):
            assert f'name="{name}"' in typed and f'<option value="{value}" selected>' in typed
        elif value:
            assert f'name="{name}"' in typed and f'value="{value}"' in typed


@pytest.mark.parametrize(
    ("key", "message"),
    [("Lead Score", "A key is snake_case"), ("plan", "1 profile(s) have a custom trait 'plan'")],
)
def test_a_bad_key_is_refused_on_the_key_field_with_the_definition_checked_too(shop, admin, key, message):
    response = admin.post(ADD, form(key, type="sum", event="Order Completed"))
    html = response.content.decode()
    assert message in _errors_in(html, cls="field-key")
    assert "A sum trait reads a property" in _errors_in(html, cls="field-property")  # both, in one round
    assert not ComputedTrait.objects.exists()


def test_a_key_already_taken_is_refused(shop, admin):
    admin.post(ADD, form("orders", type="counter", event="Order Completed"))
    response = admin.post(ADD, form("orders", type="counter", event="Order Completed"))
    assert "A computed trait 'orders' exists already" in _errors_in(response.content.decode(), cls="field-key")
    assert ComputedTrait.objects.count() == 1


# --- changing: the key is fixed, the reason asked, the definition recomputed --------------------


@pytest.fixture
def orders(shop, admin) -> ComputedTrait:
    admin.post(ADD, form("orders", type="counter", event="Order Completed", **{
        "where-0-property": "plan", "where-0-op": "none_of", "where-0-value": 'basic, "42", 7, true'}))  # fmt: skip
    return ComputedTrait.objects.get(key="orders")


def test_the_change_form_shows_the_stored_definition_and_the_key_read_only(orders, admin):
    html = admin.get(f"{LIST}{orders.pk}/change/").content.decode()
    assert "key" not in input_names(html) and "orders" in text_of(html, cls="field-key")
    assert '<option value="counter" selected>' in html
    assert 'name="event" id="id_event" value="Order Completed"' in html
    # The filter as typed: text that reads as a number stays quoted, so it stays text.
    assert 'value="plan"' in html and '<option value="none_of" selected>' in html
    assert 'value="basic, &quot;42&quot;, 7, true"' in html
    # Saved again unchanged, the definition is the same: nothing recomputed, nothing logged as redefined.
    again = admin.post(f"{LIST}{orders.pk}/change/", form("orders", type="counter", event="Order Completed",
                       **{"where-0-property": "plan", "where-0-op": "none_of",
                          "where-0-value": 'basic, "42", 7, true', "audit_reason": "no change"}))  # fmt: skip
    assert again.status_code == 302
    orders.refresh_from_db()
    assert orders.spec["where"] == [{"property": "plan", "op": "none_of", "value": ["basic", "42", 7, True]}]
    assert not AuditEntry.objects.filter(action="change").exists()  # nothing changed, nothing to log


def test_a_change_asks_why_keeps_the_key_and_recomputes(orders, admin):
    url = f"{LIST}{orders.pk}/change/"
    changed = form("renamed_key", type="counter", event="Order Completed", window_days="30")
    refused = admin.post(url, changed)  # no reason
    assert "This field is required" in _errors_in(refused.content.decode(), cls="field-audit_reason")
    orders.refresh_from_db()
    assert orders.spec["window_days"] is None

    assert admin.post(url, {**changed, "audit_reason": "a monthly view"}).status_code == 302
    orders.refresh_from_db()
    assert orders.key == "orders" and orders.spec["window_days"] == 30 and orders.spec["where"] == []
    assert values("orders") == {"ana": 1, "bo": 2}  # recomputed: only the last 30 days
    entry = AuditEntry.objects.get(action="change")
    assert entry.reason == "a monthly view" and entry.changes["definition"][1]["window_days"] == 30


def test_a_type_change_keeps_only_the_new_types_fields(orders, admin):
    response = admin.post(f"{LIST}{orders.pk}/change/", form(
        "orders", type="score", event="Order Completed", audit_reason="now a score",
        **{"rules-0-event": "Order Completed", "rules-0-points": "2.5", "where-0-property": "plan",
           "where-0-op": "=", "where-0-value": "pro"}))  # fmt: skip
    assert response.status_code == 302
    orders.refresh_from_db()
    assert orders.type == "score" and orders.spec == {
        "window_days": None, "half_life_days": None,
        "rules": [{"event": "Order Completed", "where": [], "points": 2.5}],
    }  # fmt: skip
    assert values("orders") == {"ana": 7.5, "bo": 5}


def test_deleting_asks_why_and_goes_through_the_service(orders, admin):
    url = f"{LIST}{orders.pk}/delete/"
    admin.post(url, {"post": "yes"})
    assert ComputedTrait.objects.filter(pk=orders.pk).exists()
    admin.post(url, {"post": "yes", "audit_reason": "replaced by orders_90d"})
    assert not ComputedTrait.objects.exists() and not ComputedTraitValue.objects.exists()
    entry = AuditEntry.objects.get(action="delete")
    assert entry.reason == "replaced by orders_90d" and entry.changes["definition"][1] is None


# --- the pickers ---------------------------------------------------------------------------------


def test_the_builder_offers_the_events_seen_with_their_counts(shop, admin):
    html = admin.get(ADD).content.decode()
    offered = texts(text_of_block(html, cls="field-event"), cls="cta-pick")[0]
    assert "Order Completed (5 events) Email Opened (2 events) Email Link Clicked (1 event)" in offered


def test_the_properties_seen_on_an_event_come_with_counts_and_examples(shop, admin):
    answer = admin.get(PROPERTIES, {"event": "Order Completed"}).json()
    by_path = {p["path"]: p for p in answer["properties"]}
    assert set(by_path) == {"revenue", "plan", "category"}
    assert by_path["revenue"]["events"] == 5 and "n/a" in by_path["revenue"]["examples"]
    assert admin.get(PROPERTIES, {"event": "Never Sent"}).json()["properties"] == []


# --- the preview ---------------------------------------------------------------------------------

PREVIEWED = [
    {"type": "counter", "event": "Order Completed"},
    {"type": "avg", "event": "Order Completed", "property": "revenue"},
    {"type": "last", "event": "Order Completed", "property": "plan"},
    {"type": "unique_list", "event": "Order Completed", "property": "category"},
    {"type": "unique_count", "event": "Order Completed", "property": "category", "window_days": "30"},
    {"type": "score", "half_life_days": "7", "rules-0-event": "Email Opened", "rules-0-points": "2",
     "rules-1-event": "Order Completed", "rules-1-points": "10", "rules-1-where-0-property": "revenue",
     "rules-1-where-0-op": ">=", "rules-1-where-0-value": "10"},
]  # fmt: skip


def _written() -> tuple[int, ...]:
    """Rows of everything a compute or a save would write."""
    return tuple(m.objects.count() for m in (ComputedTraitValue, ComputedTraitChange, ProfileChange, AuditEntry,
                                             ComputedTrait))  # fmt: skip


def _preview_seen(html: str) -> tuple[str, list[tuple[str, str]]]:
    count = text_of(html, id="cta-preview-profiles")
    rows = [tuple(texts(row, cls=c)[0] for c in ("cta-dist-value", "cta-dist-n"))
            for row in _rows(html)]  # fmt: skip
    return count, rows


def _rows(html: str) -> list[str]:
    import re

    return re.findall(r"<tr>.*?</tr>", text_of_block(html, id="cta-preview-table"), flags=re.S)[1:]


@pytest.mark.parametrize("fields", PREVIEWED, ids=[f["type"] for f in PREVIEWED])
def test_the_preview_shows_what_a_real_compute_then_stores(shop, admin, monkeypatch, fields):
    before = _written()
    captured = {}
    from profiles import admin_computed

    real = admin_computed.definition_preview
    monkeypatch.setattr(admin_computed, "definition_preview", lambda **kw: captured.setdefault("p", real(**kw)))
    response = admin.post(PREVIEW, form("t", **fields))
    assert response.status_code == 200
    html = response.content.decode()
    count, rows = _preview_seen(html)
    assert "nothing was saved" in page_text(html)
    assert _written() == before

    admin.post(ADD, form("t", **fields))  # saved and computed for real
    trait = ComputedTrait.objects.get(key="t")
    assert int(count) == trait.profiles_with_value == len(values("t")) > 0
    assert captured["p"].distribution == trait_distribution(trait_id=trait.pk)
    stored = list(values("t").values())
    if isinstance(stored[0], int | float):  # each value seen, with how many have it
        seen = sorted((float(v.replace(",", "")), int(n)) for v, n in rows)
        assert seen == sorted((round(v, 2), stored.count(v)) for v in set(stored))
    else:
        items = [i for v in stored for i in (v if isinstance(v, list) else [v])]
        assert sorted(rows) == sorted((str(i), str(items.count(i))) for i in set(items))


def test_a_numeric_preview_with_many_values_is_a_histogram(send, admin):
    send(*[track(f"p{i}", "Order Completed", 1, revenue=i * 10) for i in range(12)])
    html = admin.post(PREVIEW, form(type="sum", event="Order Completed", property="revenue")).content.decode()
    count, rows = _preview_seen(html)
    assert count == "12" and len(rows) == 10 and rows[0] == ("0 to 11", "2") and rows[-1] == ("99 to 110", "2")
    assert "From 0 to 110." in page_text(html)


def test_a_preview_of_a_bad_definition_says_what_to_fix(shop, admin):
    response = admin.post(PREVIEW, form(type="score", **{"rules-0-event": "Email Opened", "rules-0-points": "x",
                                                         "rules-1-event": "Page Viewed", "rules-1-points": "1",
                                                         "rules-1-where-0-property": "url",
                                                         "rules-1-where-0-op": "contains"}))  # fmt: skip
    assert response.status_code == 400
    seen = page_text(response.content.decode())
    assert "Fix the definition first: Rule 1, points: Enter a number." in seen


def test_a_preview_too_slow_is_stopped_and_says_so(shop, admin, monkeypatch):
    from profiles.computed import compute
    from profiles.computed import selectors as computed_selectors
    from profiles.computed.compiler import CompiledTrait
    from profiles.query.sql import Sql
    from tests.conftest import ON_POSTGRES

    slow = (
        "SELECT 1 AS profile_id, v.value FROM (SELECT '1'::jsonb AS value FROM pg_sleep(3)) AS v"
        if ON_POSTGRES
        else "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 100000000) "
        "SELECT 1 AS profile_id, count(*) AS value FROM n"
    )
    monkeypatch.setattr(compute, "compile_trait", lambda *a, **kw: CompiledTrait(Sql(slow)))
    monkeypatch.setattr(computed_selectors, "PREVIEW_TIMEOUT_S", 0.2)
    response = admin.post(PREVIEW, form(type="counter", event="Order Completed"))
    assert "The preview was stopped after 0.2 s" in page_text(response.content.decode())
    # The connection is as it was: writable, no timeout left behind.
    monkeypatch.undo()
    assert admin.post(ADD, form("orders", type="counter", event="Order Completed")).status_code == 302
    assert values("orders") == {"ana": 3, "bo": 2}


# --- the list and "Recompute now" ------------------------------------------------------------------


def test_the_list_shows_each_definition_with_its_last_run(orders, admin):
    orders.refresh_from_db()
    html = admin.get(LIST).content.decode()
    row = text_of(html, cls="field-key")
    assert row == "orders"
    listed = {c: text_of(html, cls=f"field-{c}") for c in ("name", "type_label", "definition", "status_label",
                                                            "duration", "profiles_with_value")}  # fmt: skip
    assert listed["name"] == "Orders" and listed["type_label"] == "Counter" and listed["status_label"] == "Live"
    assert listed["definition"] == "count of Order Completed where plan is none of “basic”, “42”, 7, true, all time"
    assert listed["duration"] == f"{orders.last_duration_ms} ms" and listed["profiles_with_value"] == "2"
    assert text_of(html, cls="field-last_computed_at") != "-"


def test_recompute_now_asks_why_is_audited_and_recomputes(orders, admin):
    ComputedTraitValue.objects.all().delete()  # values gone astray: the next run puts them back
    ComputedTrait.objects.filter(pk=orders.pk).update(last_computed_at=None)
    picked = {"action": "recompute", "_selected_action": [orders.pk]}
    confirm = admin.post(LIST, picked)
    assert "Recompute these computed traits now" in page_text(confirm.content.decode())
    admin.post(LIST, {**picked, "apply": "1", "audit_reason": ""})
    assert not AuditEntry.objects.filter(action="recompute").exists() and values("orders") == {}
    done = admin.post(LIST, {**picked, "apply": "1", "audit_reason": "values looked stale"}, follow=True)
    assert "1 queued for a full recompute." in page_text(done.content.decode())
    assert values("orders") == {"ana": 2, "bo": 2}
    entry = AuditEntry.objects.get(action="recompute")
    assert (entry.reason, entry.target_id) == ("values looked stale", str(orders.pk))


# --- permissions: staff with exactly one -----------------------------------------------------------


def test_view_only_staff_see_and_preview_but_never_change(orders, staff):
    viewer = staff("view_computedtrait")
    listed = viewer.get(LIST).content.decode()
    assert "orders" in listed and 'value="recompute"' not in listed  # the action is not offered
    page = viewer.get(f"{LIST}{orders.pk}/change/").content.decode()
    assert 'name="_save"' not in page and not {"type", "event", "audit_reason"} & input_names(page)
    assert "count of Order Completed where plan is none of" in text_of(page, id="cta-summary")
    # Preview: the saved definition, and any other (reading only).
    saved = viewer.get(PREVIEW, {"key": "orders"}).content.decode()
    assert text_of(saved, id="cta-preview-profiles") == "2"
    assert viewer.post(PREVIEW, form(type="counter", event="Email Opened")).status_code == 200
    assert viewer.get(PROPERTIES, {"event": "Order Completed"}).status_code == 200
    # Nothing changes.
    assert viewer.post(f"{LIST}{orders.pk}/change/", form("orders", type="counter", event="Email Opened",
                                                          audit_reason="x")).status_code == 403  # fmt: skip
    viewer.post(LIST, {"action": "recompute", "_selected_action": [orders.pk], "apply": "1", "audit_reason": "x"})
    assert viewer.get(ADD).status_code == 403
    assert viewer.post(f"{LIST}{orders.pk}/delete/", {"post": "yes", "audit_reason": "x"}).status_code == 403
    orders.refresh_from_db()
    assert orders.spec["event"] == "Order Completed" and ComputedTrait.objects.count() == 1
    assert not AuditEntry.objects.filter(actor_name="staff1").exists()


def test_change_staff_change_and_recompute_but_do_not_add_or_delete(orders, staff):
    editor = staff("change_computedtrait")
    assert 'value="recompute"' in editor.get(LIST).content.decode()
    opens = form("orders", type="counter", event="Email Opened", audit_reason="opens, not orders")
    assert editor.post(f"{LIST}{orders.pk}/change/", opens).status_code == 302
    assert values("orders") == {"ana": 2}
    editor.post(LIST, {"action": "recompute", "_selected_action": [orders.pk], "apply": "1", "audit_reason": "now"})
    assert AuditEntry.objects.filter(action="recompute", actor_name="staff1").exists()
    assert editor.get(ADD).status_code == 403
    assert editor.post(f"{LIST}{orders.pk}/delete/", {"post": "yes", "audit_reason": "x"}).status_code == 403
    assert editor.post(PREVIEW, form(type="counter", event="Email Opened")).status_code == 200


def test_add_staff_build_and_preview_but_cannot_open_what_exists(orders, staff):
    maker = staff("add_computedtrait")
    assert maker.post(PREVIEW, form(type="counter", event="Email Opened")).status_code == 200
    assert maker.get(PROPERTIES, {"event": "Email Opened"}).status_code == 200
    assert maker.get(ADD).status_code == 200
    maker.post(ADD, form("opens", type="counter", event="Email Opened", audit_reason="for the newsletter"))
    assert values("opens") == {"ana": 2}
    assert maker.get(f"{LIST}{orders.pk}/change/").status_code == 403
    assert maker.get(LIST).status_code == 403


def test_delete_staff_delete_with_a_reason_only(orders, staff):
    remover = staff("delete_computedtrait")
    assert remover.get(f"{LIST}{orders.pk}/change/").status_code == 403
    assert remover.post(PREVIEW, form(type="counter", event="Email Opened")).status_code == 403
    remover.post(f"{LIST}{orders.pk}/delete/", {"post": "yes", "audit_reason": "unused"})
    assert not ComputedTrait.objects.exists()
    assert AuditEntry.objects.get(action="delete").actor_name == "staff1"


def test_staff_without_a_computed_trait_permission_get_nothing(orders, staff):
    other = staff("view_profile")
    for url in (LIST, ADD, f"{LIST}{orders.pk}/change/", f"{PREVIEW}?key=orders", f"{PROPERTIES}?event=x"):
        assert other.get(url).status_code == 403, url
    assert other.post(PREVIEW, form(type="counter", event="Email Opened")).status_code == 403


# --- the profile page ------------------------------------------------------------------------------


def test_the_profile_page_shows_computed_traits_apart_with_their_definitions(orders, admin):
    admin.post(ADD, form("spend_30d", type="sum", event="Order Completed", property="revenue", window_days="30"))
    admin.post(ADD, form("lead_score", type="score", half_life_days="30",
                         **{"rules-0-event": "Page Viewed", "rules-0-points": "5"}))  # fmt: skip
    ana = Identity.objects.get(kind="user_id", value="ana").profile_id
    html = admin.get(f"/admin/profiles/profile/{ana}/change/").content.decode()
    computed = text_of_block(html, id="computed-traits")
    spend = text_of(computed, data_key="spend_30d")
    assert spend.startswith("Spend 30d spend_30d 10 Sum sum of revenue on Order Completed, last 30 days")
    value = ComputedTraitValue.objects.get(trait__key="spend_30d", profile_id=ana)
    assert timezone.localtime(value.computed_at).strftime("%-d %b %Y, %H:%M") in spend and "checked" in spend
    assert text_of(computed, data_key="orders").startswith("Orders orders 2 Counter count of Order Completed where")
    assert "No value for this person: Lead score." in page_text(computed)  # no page views
    # Custom traits stay in their own card, computed ones are not among them.
    assert "spend_30d" not in text_of(html, id="traits") and "orders" not in text_of(html, id="traits")
