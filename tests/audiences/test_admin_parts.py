"""The admin's parts below the pages: a rule in words and the diff of two versions, the size
plot and sparkline, the builder's catalog of property types (pure); sizes per day from the
history's intervals, against counting every interval (database)."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, timedelta

import pytest

from audiences.catalog import describe, value_type
from audiences.charts import nice_max, size_svg, sparkline_svg
from audiences.describe import rule_diff, rule_outline
from audiences.models import Audience, Membership
from audiences.selectors import Day, audience_days, audiences_days

SEED_1 = {"all": [
    {"event": "Email Opened", "where": [{"property": "machine_open", "op": "!=", "value": True}],
     "window": {"within_days": 180}},
    {"not": {"any": [{"event": "Order Completed", "window": {"within_days": 180}},
                     {"event": "Page Viewed", "window": {"within_days": 180}}]}},
]}  # fmt: skip


def test_a_rule_reads_as_an_outline():
    assert rule_outline(SEED_1) == [
        "All of",
        "  Email Opened where machine_open is not true, in the last 180 days",
        "  None of",
        "    Order Completed, in the last 180 days",
        "    Page Viewed, in the last 180 days",
    ]
    funnel = {"event": "Product Added", "count": {"op": "=", "value": 2}, "window": {"between_days": [7, 30]},
              "then": [{"event": "Order Completed", "within_hours": 24, "did": False}]}  # fmt: skip
    assert rule_outline(funnel) == [
        "Product Added, exactly 2 times, between 7 and 30 days ago, and then no Order Completed within 24 hours"
    ]
    either = {"not": {"all": [{"trait": "plan", "op": "one_of", "value": ["pro", "team"]},
                              {"trait": "signed_up", "op": "within_last_days", "value": 7}]}}  # fmt: skip
    assert rule_outline(either) == [
        "Not all of",
        '  trait plan is one of "pro", "team"',
        "  trait signed_up is within the last 7 days",
    ]
    assert rule_outline({"not": {"audience": "vip", "member": False}}) == ["Not: not in audience vip"]
    assert rule_outline({"not": {"not": {"trait": "x", "op": "exists"}}}) == ["Not", "  Not: trait x exists"]


def test_the_diff_of_two_versions_marks_only_what_changed():
    narrower = {"all": [{**SEED_1["all"][0], "window": {"within_days": 90}}, SEED_1["all"][1]]}
    diff = rule_diff(SEED_1, narrower)
    assert [(d.change, d.text.strip()) for d in diff if d.change != " "] == [
        ("-", "Email Opened where machine_open is not true, in the last 180 days"),
        ("+", "Email Opened where machine_open is not true, in the last 90 days"),
    ]
    assert len(diff) == 6 and {d.change for d in rule_diff(None, SEED_1)} == {"+"}  # the first version: all new


def test_the_size_plot_draws_each_day_and_escapes_nothing_it_was_not_given():
    days = [Day(date(2026, 11, 1) + timedelta(days=i), size=10 * i, entries=i % 3, exits=i % 2) for i in range(30)]
    svg = size_svg(days)
    assert svg.count('class="day"') == 30 and svg.count('class="bar-entries"') == 20 and svg.count("bar-exits") == 15
    assert 'data-day="2026-11-30" data-size="290"' in svg and "<title>Sun 01 Nov 2026: 0 members" in svg
    assert [nice_max(n) for n in (0, 3, 7, 42, 290, 1_234_567)] == [4, 4, 8, 60, 300, 1_600_000]
    assert "No history yet" in size_svg([])
    line = sparkline_svg([5, 5, 8, 2])
    assert "<polyline" in line and "5 to 2 (-3) over 4 days" in line and sparkline_svg([1]) == ""


def test_the_builder_learns_property_types_and_common_values_from_the_data():
    assert [value_type(v) for v in (True, 3, 2.5, "2026-05-01", "2026-05-01T10:00:00Z", "pro", [1], None, {})] == [
        "boolean", "number", "number", "date", "date", "text", "list", None, None]  # fmt: skip
    documents = [{"plan": "pro", "seats": 3, "cart": {"total": 20}}, {"plan": "pro"}, {"plan": "team", "tags": ["a"]},
                 None, {"plan": None}]  # fmt: skip
    seen = describe(documents, nested=True)
    assert [(s.path, s.count, s.type, s.examples) for s in seen] == [
        ("plan", 3, "text", ["pro", "team"]), ("seats", 1, "number", [3]), ("cart.total", 1, "number", [20]),
        ("tags", 1, "list", ["a"])]  # fmt: skip


def _brute(stays: list[tuple[int, datetime, datetime | None]], at: datetime) -> int:
    return len({pid for pid, entered, exited in stays if entered <= at and (exited is None or exited > at)})


@pytest.mark.django_db
def test_sizes_per_day_equal_counting_every_stay_at_each_day_end():
    """Random stays over 60 days (and a merge's move): the sizes walked back from today (three
    index range scans) equal counting, for each day, the stays open at its end; entries and
    exits are the stays begun and ended that day."""
    now = datetime(2026, 12, 3, 15, 30, tzinfo=UTC)
    rng = random.Random(14)
    a, b = Audience.objects.create(key="a", name="A", rule={}), Audience.objects.create(key="b", name="B", rule={})
    stays: dict[int, list[tuple[int, datetime, datetime | None]]] = {a.pk: [], b.pk: []}
    rows = []
    for pid in range(1, 120):
        audience = a if pid % 3 else b
        entered = now - timedelta(minutes=rng.randrange(0, 60 * 24 * 60))
        exited = entered + timedelta(minutes=rng.randrange(1, 60 * 24 * 20)) if rng.random() < 0.5 else None
        exited = None if exited is not None and exited > now else exited
        stays[audience.pk].append((pid, entered, exited))
        rows.append(Membership(audience=audience, profile_id=pid, entered_at=entered, exited_at=exited,
                               entry_cause="rule v1", exit_cause="time" if exited else ""))  # fmt: skip
    rows.append(Membership(audience=a, profile_id=999, entered_at=now - timedelta(days=2), entry_cause="merged from x"))
    stays[a.pk].append((999, now - timedelta(days=2), None))
    Membership.objects.bulk_create(rows)
    for audience in (a, b):  # the size the engine keeps with the members
        Audience.objects.filter(pk=audience.pk).update(size=len([s for s in stays[audience.pk] if s[2] is None]))
    both = audiences_days(audience_ids=[a.pk, b.pk], days=30, now=now)
    for audience in (a, b):
        days = both[audience.pk]
        assert days == audience_days(audience_id=audience.pk, days=30, now=now)
        assert [d.day for d in days] == [now.date() - timedelta(days=29 - i) for i in range(30)]
        for d in days:
            end = min(datetime.combine(d.day, datetime.max.time(), tzinfo=UTC), now)
            assert d.size == _brute(stays[audience.pk], end), d
            assert d.entries == len([s for s in stays[audience.pk] if s[1].date() == d.day])
            assert d.exits == len([s for s in stays[audience.pk] if s[2] is not None and s[2].date() == d.day])


@pytest.mark.django_db
def test_the_history_pages_through_every_entry_and_exit_once_newest_first():
    """Thousands entered at one instant (a full computation), some left later, some at that
    same instant: paging by the cursor lists each entry and exit exactly once, in order."""
    from audiences.selectors import audience_moves

    now = datetime(2026, 12, 3, 15, 30, tzinfo=UTC)
    audience = Audience.objects.create(key="a", name="A", rule={})
    rows = [Membership(audience=audience, profile_id=pid, entered_at=now - timedelta(days=3),
                       exited_at=(now - timedelta(days=pid % 3)) if pid % 4 == 0 else None,
                       entry_cause="rule v1", exit_cause="time") for pid in range(1, 130)]  # fmt: skip
    Membership.objects.bulk_create(rows)
    seen, cursor = [], None
    while True:
        page = audience_moves(audience_id=audience.pk, before=cursor, limit=17)
        seen += page
        if len(page) < 17:
            break
        cursor = page[-1].cursor
    keys = [(m.at, m.stay_id, not m.entered) for m in seen]
    assert keys == sorted(keys, reverse=True) and len(set(keys)) == len(keys)
    assert len([m for m in seen if m.entered]) == 129 and len([m for m in seen if not m.entered]) == 32
    assert audience_moves(audience_id=audience.pk, before="not a cursor", limit=3) == seen[:3]


@pytest.mark.django_db
def test_finished_days_are_counted_once_then_read_from_the_cache(django_assert_num_queries):
    """A finished day's entries and exits never change: the second look counts only today."""
    now = datetime.now(UTC)
    a, b = Audience.objects.create(key="a", name="A", rule={}), Audience.objects.create(key="b", name="B", rule={})
    Membership.objects.bulk_create([
        Membership(audience=aud, profile_id=pid, entered_at=now - timedelta(days=pid % 20, minutes=1),
                   exited_at=now - timedelta(days=pid % 5) if pid % 4 == 0 and pid % 5 < pid % 20 else None,
                   entry_cause="rule v1") for pid in range(1, 80) for aud in (a, b)
    ])  # fmt: skip
    for aud in (a, b):
        Audience.objects.filter(pk=aud.pk).update(size=Membership.objects.filter(audience=aud, exited_at=None).count())
    counted = audiences_days(audience_ids=[a.pk, b.pk], days=30, now=now)  # no cache at a given moment
    with django_assert_num_queries(3):  # sizes, then entries and exits from the first day
        assert audiences_days(audience_ids=[a.pk], days=30) == {a.pk: counted[a.pk]}
    with django_assert_num_queries(5):  # b's days are counted; a's come from the cache, but today
        assert audiences_days(audience_ids=[a.pk, b.pk], days=30) == counted
    with django_assert_num_queries(3):  # sizes, and today's entries and exits
        assert audiences_days(audience_ids=[a.pk, b.pk], days=30) == counted
