"""The audience engine through the real pipeline: the seed audiences, real time, time
passing, merges and splits, deletes, history, and the full recompute equal to real time."""

from __future__ import annotations

from datetime import timedelta

import pytest

from audiences.models import AudienceChange, Membership
from audiences.services import audience_compute
from tests.audiences.conftest import NOW, members, page, track

pytestmark = pytest.mark.django_db

OPENED_NOT_BOUGHT = {"all": [
    {"event": "Email Opened", "where": [{"property": "machine_open", "op": "!=", "value": True}],
     "window": {"within_days": 180}},
    {"not": {"event": "Order Completed", "window": {"within_days": 180}}},
    {"not": {"event": "Page Viewed", "window": {"within_days": 180}}},
]}  # fmt: skip
CART_ABANDONED = {"event": "Product Added", "then": [{"event": "Order Completed", "within_hours": 24, "did": False}]}
FREQUENT = {"event": "Page Viewed", "window": {"within_days": 30}, "count": {"op": ">=", "value": 5}}


@pytest.fixture
def people(send):
    send(
        track("ann", "Email Opened", 10), track("ann", "Email Opened", 3, machine_open=True),
        track("bob", "Email Opened", 5, machine_open=True),  # only a machine open
        track("cat", "Email Opened", 20), track("cat", "Order Completed", 2),
        track("dan", "Email Opened", 20), page("dan", 1),
        track("eve", "Email Opened", 200),  # too long ago
        track("fay", "Product Added", 3), track("fay", "Order Completed", 2.5),  # bought within 24 h
        track("gus", "Product Added", 3),  # abandoned
        track("gus", "Product Added", 0.5),  # too recent to count yet, but the first one counts
        track("hal", "Product Added", 0.2),  # too recent
        *[page("ivy", d) for d in (1, 2, 3, 4, 5)], *[page("jon", d) for d in (1, 2, 3, 4, 40)],
    )  # fmt: skip


def test_the_seed_audiences(people, define):
    define(key="opened_not_bought", rule=OPENED_NOT_BOUGHT)
    define(key="cart_abandoned", rule=CART_ABANDONED)
    define(key="frequent", rule=FREQUENT)
    assert members("opened_not_bought") == {"ann"}
    assert members("cart_abandoned") == {"gus"}
    assert members("frequent") == {"ivy"}
    define(key="opened_and_frequent_not_cart", rule={"all": [
        {"any": [{"audience": "opened_not_bought"}, {"audience": "frequent"}]},
        {"audience": "cart_abandoned", "member": False}]})  # fmt: skip
    assert members("opened_and_frequent_not_cart") == {"ann", "ivy"}


def test_members_follow_events_in_real_time(people, define, send):
    audience = define(key="opened_not_bought", rule=OPENED_NOT_BOUGHT)
    define(key="not_opened", rule={"not": {"audience": "opened_not_bought"}})
    assert "ann" not in members("not_opened")
    send(track("ann", "Order Completed", 0), track("kim", "Email Opened", 0))
    assert members("opened_not_bought") == {"kim"}
    assert "ann" in members("not_opened") and "kim" not in members("not_opened")  # in order, in the same pass
    changes = {(c.entered, c.cause) for c in AudienceChange.objects.filter(audience=audience)}
    assert (False, "event Order Completed") in changes and (True, "event Email Opened") in changes
    ann_stay = Membership.objects.filter(audience=audience, exited_at__isnull=False).get()
    assert ann_stay.entry_cause == "rule v1" and ann_stay.exit_cause == "event Order Completed"
    audience.refresh_from_db()
    assert audience.size == 1


def test_time_passing_moves_people(people, define):
    audience = define(key="cart_abandoned", rule=CART_ABANDONED)
    frequent = define(key="frequent", rule=FREQUENT)
    assert audience.time_dependent and frequent.time_dependent
    audience_compute(audience_id=audience.pk, cause="time", now=NOW + timedelta(days=1))
    assert members("cart_abandoned") == {"gus", "hal"}  # hal's cart is now a day old
    audience_compute(audience_id=frequent.pk, cause="time", now=NOW + timedelta(days=26))
    assert members("frequent") == set()  # ivy's views left the 30 days
    assert Membership.objects.get(audience=frequent).exit_cause == "time"
