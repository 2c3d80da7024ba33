"""Pure parts of the computed traits admin: a filter's value typed as text and read back, a
definition said in words, the preview's rows. No database."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from profiles.admin_computed import preview_bars
from profiles.admin_computed_forms import DefinitionForm, filter_value, filter_value_text
from profiles.computed.definitions import definition_parse
from profiles.computed.selectors import Distribution, Preview
from profiles.computed.summary import definition_summary


@pytest.mark.parametrize(
    ("op", "text", "value"),
    [
        ("=", "42", 42),
        ("=", "-7", -7),
        ("=", "1.5e3", 1500.0),
        ("=", '"42"', "42"),  # quoted: text
        ("=", "true", True),
        ("!=", "FALSE", False),
        ("<", "true", "true"),  # an order compares numbers or text, not booleans
        (">=", " 10 ", 10),
        ("=", "pro plan", "pro plan"),
        ("one_of", 'pro, team , "b, c", 3, true', ["pro", "team", "b, c", 3, True]),
        ("none_of", "basic,,", ["basic"]),
        ("contains", " Sale ", "Sale"),
        ("starts_with", "42", "42"),  # text operators take text as typed
        ("after_date", "2026-05-01", "2026-05-01"),
        ("within_last_days", "30", 30),
        ("within_last_days", "soon", "soon"),  # refused by definition_parse, on the value
        ("exists", "anything", None),
        ("=", "", None),
    ],
)
def test_a_typed_value_is_read_for_its_operator(op, text, value):
    assert filter_value(op, text) == value
    assert type(filter_value(op, text)) is type(value)


SCALARS = st.one_of(
    st.booleans(),
    st.integers(min_value=-(2**53) + 1, max_value=2**53 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
)


@given(op=st.sampled_from(["=", "!="]), value=SCALARS)
def test_a_stored_value_is_shown_as_text_that_reads_back_the_same(op, value):
    back = filter_value(op, filter_value_text(op, value))
    assert back == value and type(back) is type(value)


@given(op=st.sampled_from(["one_of", "none_of"]), value=st.lists(SCALARS, min_size=1, max_size=5))
def test_a_stored_list_is_shown_as_text_that_reads_back_the_same(op, value):
    back = filter_value(op, filter_value_text(op, value))
    assert back == value and [type(v) for v in back] == [type(v) for v in value]


@pytest.mark.parametrize(
    ("definition", "said"),
    [
        ({"type": "counter", "event": "Order Completed", "window_days": 90}, "count of Order Completed, last 90 days"),
        ({"type": "counter", "event": "Page Viewed",
          "where": [{"property": "url", "op": "contains", "value": "pricing"}]},
         "count of Page Viewed where url contains “pricing”, all time"),
        ({"type": "sum", "event": "Order Completed", "property": "revenue",
          "where": [{"property": "revenue", "op": ">", "value": 0}, {"property": "coupon", "op": "not_exists"}]},
         "sum of revenue on Order Completed where revenue > 0 and coupon does not exist, all time"),
        ({"type": "avg", "event": "Order Completed", "property": "revenue", "window_days": 1},
         "average revenue on Order Completed, last day"),
        ({"type": "most_frequent", "event": "Product Viewed", "property": "category", "min_frequency": 3},
         "most frequent category on Product Viewed (seen at least 3 times), all time"),
        ({"type": "last", "event": "Signed Up", "property": "context.campaign.source"},
         "latest context.campaign.source on Signed Up, all time"),
        ({"type": "unique_count", "event": "Order Completed", "property": "sku",
          "where": [{"property": "at", "op": "within_last_days", "value": 7}]},
         "number of distinct sku on Order Completed where at is within the last 7 days, all time"),
        ({"type": "score", "half_life_days": 30, "window_days": 180, "rules": [
            {"event": "Email Opened", "points": 1, "where": [{"property": "machine_open", "op": "!=", "value": True}]},
            {"event": "Unsubscribed", "points": -10}]},
         "+1 per Email Opened where machine_open ≠ true; -10 per Unsubscribed; half-life 30 days, last 180 days"),
    ],
)  # fmt: skip
def test_a_definition_is_said_in_a_few_words(definition, said):
    assert definition_summary(definition_parse({"key": "k", **definition})) == said


def _preview(d: Distribution, numbers: list[tuple[float, int]] | None = None) -> Preview:
    return Preview(d, 1, numbers or [])


def test_the_preview_rows_are_values_or_buckets_with_bars():
    few = _preview(Distribution(3, "numbers", [], [(1, 2, 2), (2, 3, 1)], 1, 3), numbers=[(1, 2), (3, 1)])
    assert preview_bars(few) == [("1", 2, 100), ("3", 1, 50)]
    many = _preview(Distribution(4, "numbers", [], [(0, 12.5, 1), (12.5, 25, 3)], 0, 25))
    assert preview_bars(many) == [("0 to 12.5", 1, 33), ("12.5 to 25", 3, 100)]
    words = _preview(Distribution(5, "values", [("pro", 4), ("team", 1)], []))
    assert preview_bars(words) == [("pro", 4, 100), ("team", 1, 25)]
    assert preview_bars(_preview(Distribution(0, "values", [], []))) == []


def test_rows_posted_keep_their_numbers_and_a_new_row_takes_the_next_one():
    form = DefinitionForm({"type": "counter", "event": "X", "where-1-property": "", "where-1-value": "",
                           "where-4-property": "plan", "where-4-op": "=", "where-4-value": "pro",
                           "rules-2-event": "Y", "rules-2-points": "1", "rules-2-where-7-property": "a",
                           "rules-2-where-7-op": "exists"})  # fmt: skip
    assert [r.prefix for r in form.rows] == ["where-4"] and form.next_row() == 5  # the empty row is dropped
    assert form.next_rule() == 3 and form.rules[0].next_row() == 8
    assert DefinitionForm().next_row() == 0 and DefinitionForm().next_rule() == 1  # the first, empty rule is 0
