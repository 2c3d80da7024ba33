"""The shared reads behind the Profile API, the REST API and the admin timeline: finding a
profile by any identifier, and paging its events by cursor."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from profiles.models import Event, Profile
from profiles.selectors import profile_events, profile_lookup
from profiles.timeline import BadCursor, Cursor

pytestmark = pytest.mark.django_db


def identify(user_id=None, anonymous_id=None, t="2026-11-01T10:00:00Z", **traits):
    return {"type": "identify", "userId": user_id, "anonymousId": anonymous_id, "traits": traits, "timestamp": t}


def test_lookup_by_any_identifier_normalises_email_and_follows_merges(send):
    send(identify(None, "phone", email="Ada@Example.com"))
    send(identify("u2", "laptop"))
    older, newer = Profile.objects.order_by("id")
    assert profile_lookup(kind="email", value="  ADA@example.com") == older
    assert profile_lookup(kind="anonymous_id", value="laptop") == newer
    send(identify("u2", "laptop", t="2026-11-02T10:00:00Z", email="ada@example.com"))  # newer merges into older
    assert profile_lookup(kind="user_id", value="u2") == older
    assert profile_lookup(kind="use", value=newer.key) == older  # a merged-away public id finds the winner
    assert profile_lookup(kind="use", value=newer.key.removeprefix("use_")) == older
    assert profile_lookup(kind="user_id", value="nobody") is None
    assert profile_lookup(kind="email", value="   ") is None


def test_event_pages_neither_repeat_nor_skip_even_on_equal_timestamps(send):
    same = "2026-11-01T10:00:00Z"
    send(*[{"type": "track", "userId": "u1", "event": f"E{i}", "timestamp": same} for i in range(7)])
    send(*[{"type": "page", "userId": "u1", "name": "Home", "timestamp": f"2026-11-0{d}T00:00:00Z"} for d in (2, 3)])
    profile = profile_lookup(kind="user_id", value="u1")
    for oldest_first in (False, True):
        seen, cursor = [], None
        while True:
            page, cursor = profile_events(profile_id=profile.id, limit=3, after=cursor, oldest_first=oldest_first)
            seen += [e.id for e in page]
            if cursor is None:
                break
            cursor = Cursor.decode(cursor.encode())  # as it travels through a URL
        expected = Event.objects.filter(profile=profile).order_by("timestamp", "id").values_list("id", flat=True)
        assert seen == (list(expected) if oldest_first else list(reversed(expected)))


def test_event_filters(send):
    send(
        {"type": "track", "userId": "u1", "event": "Order Completed", "timestamp": "2026-11-01T00:00:00Z"},
        {"type": "track", "userId": "u1", "event": "Email Opened", "timestamp": "2026-11-02T00:00:00Z"},
        {"type": "page", "userId": "u1", "name": "Pricing", "timestamp": "2026-11-03T00:00:00Z"},
    )
    pid = profile_lookup(kind="user_id", value="u1").id

    def names(**kw):
        return [e.event or e.name for e in profile_events(profile_id=pid, limit=10, **kw)[0]]

    assert names() == ["Pricing", "Email Opened", "Order Completed"]
    assert names(types=["page"]) == ["Pricing"]
    assert names(names=["Pricing", "Email Opened"]) == ["Pricing", "Email Opened"]
    assert names(exclude_names=["Email Opened"]) == ["Pricing", "Order Completed"]
    assert names(start=datetime(2026, 11, 2, tzinfo=UTC), end=datetime(2026, 11, 3, tzinfo=UTC)) == ["Email Opened"]


@pytest.mark.parametrize("text", ["", "nope", "MjAyNnx4", "bm90LWEtZGF0ZXwx"])
def test_a_cursor_we_did_not_make_is_refused(text):
    with pytest.raises(BadCursor):
        Cursor.decode(text)
