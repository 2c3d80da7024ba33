"""Routing, flattening and backoff: pure, no database."""

from __future__ import annotations

import random

import pytest

from destinations.delivery import backoff_seconds
from destinations.flatten import flatten_traits
from destinations.routing import Route, consent_refuses, filtered_reason, integrations_refuse


def route(kind: str = "webhook", **kw) -> Route:
    base = dict(id=1, name="Hook", kind=kind, audiences="all", traits=[], event_sources=frozenset({7}),
                event_names=frozenset(), consent_categories=())  # fmt: skip
    return Route(**{**base, **kw})


@pytest.mark.parametrize(
    ("context", "categories", "refused"),
    [
        (None, ("marketing",), None),  # no context: flows everywhere
        ({}, ("marketing",), None),
        ({"consent": {}}, ("marketing",), None),  # no consent object
        ({"consent": {"categoryPreferences": {}}}, ("marketing",), "consent: marketing not granted"),
        ({"consent": {"categoryPreferences": {}}}, (), None),  # an unmapped destination takes it
        ({"consent": {"categoryPreferences": {"marketing": True}}}, ("marketing",), None),
        ({"consent": {"categoryPreferences": {"marketing": True, "ads": False}}}, ("ads", "marketing"),
         "consent: ads not granted"),
        ({"consent": {"categoryPreferences": {"marketing": "yes"}}}, ("marketing",), "consent: marketing not granted"),
    ],
)  # fmt: skip
def test_consent_follows_segments_rules(context, categories, refused):
    message = {"type": "track"} if context is None else {"type": "track", "context": context}
    assert consent_refuses(message, categories) == refused


@pytest.mark.parametrize(
    ("integrations", "kind", "refused"),
    [
        (None, "webhook", None),
        ({"All": False}, "webhook", "integrations: All is false"),
        ({"All": False, "Webhooks": True}, "webhook", None),
        ({"All": False, "Mailjet": True}, "mailjet", None),
        ({"All": False, "Mailjet": True}, "mailchimp", "integrations: All is false"),
        ({"Mailchimp": False}, "mailchimp", "integrations: Mailchimp is false"),
        ({"Hook": False}, "webhook", "integrations: Hook is false"),  # by the destination's own name
        ({"All": False, "Mailjet": {"listId": 3}}, "mailjet", None),  # an options object enables it
    ],
)  # fmt: skip
def test_the_integrations_object_selects_destinations(integrations, kind, refused):
    message = {"type": "identify"} if integrations is None else {"type": "identify", "integrations": integrations}
    assert integrations_refuse(message, name="Hook", kind=kind) == refused


def test_consent_is_looked_at_before_the_integrations_object():
    message = {"type": "identify", "traits": {"email": "a@example.com"}, "integrations": {"All": False},
               "context": {"consent": {"categoryPreferences": {"marketing": False}}}}  # fmt: skip
    reason = filtered_reason(message, route("mailjet", consent_categories=("marketing",)))
    assert reason == "consent: marketing not granted"


def test_a_list_destination_takes_identify_calls_with_an_email():
    assert filtered_reason({"type": "track", "event": "Audience Entered"}, route("mailjet")) == (
        "mailjet takes identify calls only"
    )
    assert (
        filtered_reason({"type": "identify", "traits": {}}, route("mailchimp")) == "no email: a contact list needs one"
    )
    assert filtered_reason({"type": "identify", "traits": {"email": "a@example.com"}}, route("mailchimp")) is None


def test_subscriptions():
    r = route(audiences=["churn_risk"], traits="all", event_names=frozenset({"Order Completed"}))
    assert r.subscribes("audience", "churn_risk") and not r.subscribes("audience", "vip")
    assert r.subscribes("trait", "lead_score")
    assert r.subscribes("event", "", source_id=7, event="Order Completed")
    assert not r.subscribes("event", "", source_id=7, event="Page Viewed")
    assert not r.subscribes("event", "", source_id=8, event="Order Completed")
    assert not route("mailjet").subscribes("event", "", source_id=7, event="Order Completed")


def test_traits_flatten_exactly_one_level_and_say_what_was_dropped():
    flat = flatten_traits({
        "plan": "pro", "location": {"latitude": 48.8735, "longitude": 2.3716},
        "address": {"city": "Paris", "geo": {"lat": 1}}, "tags": ["a", "b"], "lifetime_value": None,
    })  # fmt: skip
    assert flat.properties == {"plan": "pro", "location_latitude": 48.8735, "location_longitude": 2.3716,
                               "address_city": "Paris", "lifetime_value": None}  # fmt: skip
    assert flat.dropped == ["address.geo: nested too deep", "tags: a list is no contact property"]


def test_backoff_starts_within_seconds_grows_and_honours_retry_after():
    rng = random.Random(1)
    first = [backoff_seconds(1, rng=rng) for _ in range(50)]
    assert all(1.0 <= s <= 3.0 for s in first) and len({round(s, 3) for s in first}) > 40  # randomized
    assert all(8 * 0.5 <= backoff_seconds(4, rng=rng) <= 8 * 1.5 * 2 for _ in range(20))
    assert max(backoff_seconds(40, rng=rng) for _ in range(20)) <= 1800 * 1.5
    assert 30 <= backoff_seconds(1, 30.0, rng=rng) <= 31
