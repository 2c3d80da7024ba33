"""Computed traits and scores through the real pipeline: every type, filters, windows and
decay, merges and splits, real time equal to a full recompute, only changes recorded."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.utils import timezone

from profiles.computed.services import computed_trait_compute, computed_trait_create, computed_trait_update
from profiles.models import (
    ComputedTrait,
    ComputedTraitChange,
    ComputedTraitValue,
    EventName,
    Identity,
    ProfileChange,
)
from profiles.query.filters import QueryError
from profiles.services.identity_ops import profile_split

pytestmark = pytest.mark.django_db
NOW = timezone.now()


def ago(days: float) -> str:
    return (NOW - timedelta(days=days)).isoformat().replace("+00:00", "Z")


def track(who, event, days, **properties):
    return {"type": "track", "userId": who, "event": event, "timestamp": ago(days), "properties": properties}


def page(who, days, **properties):
    return {"type": "page", "userId": who, "name": "Pricing", "timestamp": ago(days), "properties": properties}


@pytest.fixture
def define(django_capture_on_commit_callbacks):
    """Define a trait; its full computation (a task, inline here) runs at the commit."""

    def _define(**data):
        with django_capture_on_commit_callbacks(execute=True):
            trait = computed_trait_create(data=data)
        trait.refresh_from_db()
        assert trait.status == "live", trait.last_error
        return trait

    return _define


def values(key):
    """{user_id: value} of a trait."""
    out = {}
    for v in ComputedTraitValue.objects.filter(trait__key=key):
        user = Identity.objects.filter(profile_id=v.profile_id, kind="user_id").values_list("value", flat=True).first()
        out[user] = v.value
    return out


@pytest.fixture
def shop(send):
    send(
        track("ana", "Order Completed", 2, revenue=10, plan="basic", category="shoes"),
        track("ana", "Order Completed", 40, revenue=20.5, plan="pro", category="hats"),
        track("ana", "Order Completed", 120, revenue="30", plan="pro", category="shoes"),
        track("ana", "Product Viewed", 1, category="shoes"),
        track("bo", "Order Completed", 5, revenue="n/a", plan="team", category="bags"),
        track("bo", "Order Completed", 6, revenue=-3, category="bags"),
        page("bo", 3, url="https://x/pricing"),
        page("bo", 4, url="https://x/about"),
        {"type": "identify", "userId": "cy", "traits": {"plan": "pro"}, "timestamp": ago(1)},
    )


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"type": "counter", "event": "Order Completed"}, {"ana": 3, "bo": 2}),
        ({"type": "counter", "event": "Order Completed", "window_days": 90}, {"ana": 2, "bo": 2}),
        ({"type": "counter", "event": "Page Viewed",
          "where": [{"property": "url", "op": "contains", "value": "PRICING"}]}, {"bo": 1}),
        ({"type": "sum", "event": "Order Completed", "property": "revenue"}, {"ana": 60.5, "bo": -3}),
        ({"type": "avg", "event": "Order Completed", "property": "revenue"}, {"ana": 20.166667, "bo": -3}),
        ({"type": "min", "event": "Order Completed", "property": "revenue"}, {"ana": 10, "bo": -3}),
        ({"type": "max", "event": "Order Completed", "property": "revenue", "window_days": 30}, {"ana": 10, "bo": -3}),
        ({"type": "most_frequent", "event": "Order Completed", "property": "plan"}, {"ana": "pro"}),
        ({"type": "most_frequent", "event": "Order Completed", "property": "category", "min_frequency": 1},
         {"ana": "shoes", "bo": "bags"}),
        # Ties go to the alphabetically first text; a number stays a number ("30" is text).
        ({"type": "most_frequent", "event": "Order Completed", "property": "revenue", "min_frequency": 1},
         {"ana": 10, "bo": -3}),
        ({"type": "first", "event": "Order Completed", "property": "plan"}, {"ana": "pro", "bo": "team"}),
        ({"type": "last", "event": "Order Completed", "property": "plan"}, {"ana": "basic", "bo": "team"}),
        ({"type": "unique_list", "event": "Order Completed", "property": "category"},
         {"ana": ["hats", "shoes"], "bo": ["bags"]}),
        ({"type": "unique_count", "event": "Order Completed", "property": "category"}, {"ana": 2, "bo": 1}),
        ({"type": "counter", "event": "Order Completed", "where": [{"property": "revenue", "op": ">", "value": 15}]},
         {"ana": 2}),
    ],
)  # fmt: skip
def test_each_type_computes_what_it_says(shop, define, data, expected):
    trait = define(key="t", **data)
    assert (
        values("t") == pytest.approx(expected)
        if all(isinstance(v, int | float) for v in expected.values())
        else (values("t") == expected)
    )
    assert trait.profiles_with_value == len(expected)


def test_values_follow_new_events_in_real_time(shop, define, send):
    define(key="orders", type="counter", event="Order Completed")
    define(key="spend", type="sum", event="Order Completed", property="revenue")
    assert values("orders") == {"ana": 3, "bo": 2}
    send(track("ana", "Order Completed", 0, revenue=5), track("cy", "Order Completed", 0, revenue=7))
    assert values("orders") == {"ana": 4, "bo": 2, "cy": 1}
    assert values("spend")["ana"] == pytest.approx(65.5)
    changed = ComputedTraitChange.objects.filter(key="orders").order_by("id")
    assert [(c.old, c.new) for c in changed][-2:] in ([(3, 4), (None, 1)], [(None, 1), (3, 4)])
    # What else changed is in the feed, for the audiences above.
    assert any(c.what.get("computed") == ["orders", "spend"] for c in ProfileChange.objects.all())


def test_an_event_of_another_name_recomputes_nothing(shop, define, send):
    define(key="orders", type="counter", event="Order Completed")
    before = ComputedTraitChange.objects.count()
    send(track("ana", "Product Viewed", 0))
    assert ComputedTraitChange.objects.count() == before


def test_only_changed_values_are_written_and_a_full_recompute_changes_nothing(shop, define, send):
    trait = define(key="orders", type="counter", event="Order Completed", window_days=90)
    send(track("ana", "Order Completed", 0), track("bo", "Product Viewed", 0), track("dee", "Order Completed", 1))
    real_time = values("orders")
    changes = ComputedTraitChange.objects.count()
    result = computed_trait_compute(trait_id=trait.pk, scope="full")
    assert result.changed == 0 and values("orders") == real_time  # the same query: the same values
    assert ComputedTraitChange.objects.count() == changes


def test_windows_lose_old_events_on_schedule(shop, define):
    trait = define(key="orders_90d", type="counter", event="Order Completed", window_days=90)
    assert values("orders_90d") == {"ana": 2, "bo": 2}
    later = NOW + timedelta(days=60)  # the window now starts 30 days ago: ana's 40-day-old order leaves it
    result = computed_trait_compute(trait_id=trait.pk, scope="schedule", now=later)
    assert values("orders_90d") == {"ana": 1, "bo": 2} and result.changed == 1
    assert result.profiles == 1  # only the profiles whose events crossed the window's edge were recomputed
    assert {(c.old, c.new) for c in ComputedTraitChange.objects.filter(key="orders_90d", at=later)} == {(2, 1)}
    end = NOW + timedelta(days=91)  # every event has left it: no value remains
    result = computed_trait_compute(trait_id=trait.pk, scope="schedule", now=end)
    assert values("orders_90d") == {} and result.changed == 2
    assert {(c.old, c.new) for c in ComputedTraitChange.objects.filter(key="orders_90d", at=end)} == {
        (1, None),
        (2, None),
    }


def test_a_lead_score_adds_points_and_decays(send, define):
    """The README's lead score, on the seed's email events."""
    send(track("ana", "Email Opened", 30), track("ana", "Email Link Clicked", 30), page("ana", 0, path="/pricing"),
         page("ana", 0, path="/about"), track("ana", "Email Opened", 0, machine_open=True))  # fmt: skip
    trait = define(key="lead_score", type="score", half_life_days=30, rules=[
        {"event": "Email Opened", "where": [{"property": "machine_open", "op": "!=", "value": True}], "points": 1},
        {"event": "Email Link Clicked", "points": 3},
        {"event": "Page Viewed", "where": [{"property": "path", "op": "starts_with", "value": "/pricing"}],
         "points": 5},
    ])  # fmt: skip
    # 30 days ago (1 + 3) halves to 2; today's pricing visit is worth 5; /about and the
    # machine open nothing.
    assert values("lead_score")["ana"] == pytest.approx(7.0, abs=0.01)
    computed_trait_compute(trait_id=trait.pk, scope="schedule", now=NOW + timedelta(days=30))
    assert values("lead_score")["ana"] == pytest.approx(3.5, abs=0.01)


def test_merges_and_splits_put_values_right(send, define, staff_user, django_capture_on_commit_callbacks):
    send(track(None, "Order Completed", 3, category="a") | {"anonymousId": "phone"},
         track("ana", "Order Completed", 2, category="b"),
         track("ana", "Order Completed", 1, category="b"))  # fmt: skip
    define(key="orders", type="counter", event="Order Completed")
    define(key="categories", type="unique_list", event="Order Completed", property="category")
    phone = Identity.objects.get(value="phone").profile_id
    assert ComputedTraitValue.objects.get(profile_id=phone, trait__key="orders").value == 1
    send({"type": "identify", "userId": "ana", "anonymousId": "phone", "timestamp": ago(0)})  # merges them
    assert values("orders") == {"ana": 3} and values("categories") == {"ana": ["a", "b"]}  # a sum, a union
    ana = Identity.objects.get(value="ana").profile_id
    assert not ComputedTraitValue.objects.exclude(profile_id=ana).exists()  # the loser holds none

    with django_capture_on_commit_callbacks(execute=True):  # the split commits: the consumers are woken
        result = profile_split(profile_id=ana, identifiers=[("anonymous_id", "phone")], actor=staff_user, reason="t")
    other = result.profile_ids[1]
    by_profile = {(v.profile_id, v.trait.key): v.value for v in ComputedTraitValue.objects.all()}
    assert by_profile == {(ana, "orders"): 2, (ana, "categories"): ["b"], (other, "orders"): 1,
                          (other, "categories"): ["a"]}  # fmt: skip


@pytest.fixture
def staff_user():
    return User.objects.create_superuser("staff", "s@x.io", "pw")


def test_event_names_are_counted_for_the_admin(shop, define, send):
    define(key="orders", type="counter", event="Order Completed")
    before = EventName.objects.get(name="Order Completed").count
    send(track("ana", "Order Completed", 0), page("ana", 0))
    assert EventName.objects.get(name="Order Completed").count == before + 1
    assert EventName.objects.filter(name="Page Viewed").exists()


def test_a_custom_trait_of_the_same_key_is_refused(shop):
    with pytest.raises(QueryError) as caught:
        computed_trait_create(data={"key": "plan", "type": "counter", "event": "Order Completed"})
    assert caught.value.path == "key" and "custom trait 'plan'" in caught.value.message


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"key": "Bad Key", "type": "counter", "event": "X"}, "key"),
        ({"key": "k", "type": "median", "event": "X"}, "type"),
        ({"key": "k", "type": "sum", "event": "X"}, "property"),
        ({"key": "k", "type": "counter"}, "event"),
        ({"key": "k", "type": "counter", "event": "X", "window_days": 0}, "window_days"),
        ({"key": "k", "type": "counter", "event": "X", "where": [{"property": "a", "op": "~", "value": 1}]},
         "where[0].op"),
        ({"key": "k", "type": "score", "rules": []}, "rules"),
        ({"key": "k", "type": "score", "rules": [{"event": "X", "points": "many"}]}, "rules[0].points"),
        ({"key": "k", "type": "counter", "event": "X", "schedule_hours": 0}, "schedule_hours"),
    ],
)  # fmt: skip
def test_bad_definitions_name_the_field(data, field):
    with pytest.raises(QueryError) as caught:
        computed_trait_create(data=data)
    assert caught.value.path == field
    assert not ComputedTrait.objects.exists()


def test_a_changed_definition_is_recomputed_and_its_key_is_fixed(shop, define, django_capture_on_commit_callbacks):
    define(key="orders", type="counter", event="Order Completed")
    with django_capture_on_commit_callbacks(execute=True):
        computed_trait_update(key="orders", data={"window_days": 30})
    assert values("orders") == {"ana": 1, "bo": 2}
    with pytest.raises(QueryError):
        computed_trait_update(key="orders", data={"key": "orders_2"})


def test_the_compute_traits_command_equals_real_time(shop, define, send):
    """Values kept current in real time (events, a merge) equal what `compute_traits`
    computes from nothing; a second run changes nothing."""
    from io import StringIO

    from django.core.management import CommandError, call_command

    define(key="orders", type="counter", event="Order Completed", window_days=90)
    define(key="plans", type="unique_list", event="Order Completed", property="plan")
    define(key="lead", type="score", rules=[{"event": "Order Completed", "points": 3}], half_life_days=30)
    send(track("ana", "Order Completed", 0, plan="team"), track("dee", "Order Completed", 1, plan="pro"))
    send({"type": "alias", "userId": "ana", "previousId": "anon-1"},
         {"type": "track", "anonymousId": "anon-1", "event": "Order Completed", "timestamp": ago(0.5)})  # fmt: skip
    real_time = {key: values(key) for key in ("orders", "plans", "lead")}
    assert real_time["orders"]["ana"] == 4 and real_time["plans"]["dee"] == ["pro"]

    ComputedTraitValue.objects.all().delete()  # from nothing
    out = StringIO()
    call_command("compute_traits", "--no-progress", stdout=out)
    assert {key: values(key) for key in ("orders", "plans", "lead")} == real_time
    assert "Recomputed 3 of 3 traits" in out.getvalue()

    out = StringIO()
    call_command("compute_traits", "--key", "orders", "--no-progress", stdout=out)
    assert "orders: 0 values changed" in out.getvalue() and "Recomputed 1 of 1" in out.getvalue()
    with pytest.raises(CommandError, match="No computed trait has the key 'nope'"):
        call_command("compute_traits", "--key", "nope", "--no-progress")
