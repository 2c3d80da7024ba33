"""Our REST API, /api/v1/, through HTTP."""

from __future__ import annotations

import pytest
from django.test import Client

from profiles.models import Event, Profile

pytestmark = pytest.mark.django_db


def identify(user_id, anonymous_id=None, t="2026-11-01T10:00:00Z", **traits):
    return {"type": "identify", "userId": user_id, "anonymousId": anonymous_id, "traits": traits, "timestamp": t}


@pytest.fixture
def people(send):
    send(
        identify("u1", "a1", email="ada@example.com", name="Ada", city="London"),
        identify("u2", "a2", email="grace@navy.mil", name="Grace", city="Arlington"),
        identify("u3", "a3", name="Alan", city="London"),
    )
    return {p.identities.get(kind="user_id").value: p for p in Profile.objects.all()}


def test_search(get, people):
    def found(**params):
        body = get("/api/v1/profiles", **params).json()
        return sorted(p["id"] for p in body["results"])

    assert found(q="user_id:u2") == [people["u2"].key]
    assert found(q="navy") == [people["u2"].key]  # an email fragment
    assert found(q="london") == sorted([people["u1"].key, people["u3"].key])  # a trait value
    assert found(q="city:Arlington") == [people["u2"].key]
    assert found(q="a3") == [people["u3"].key]
    assert len(found()) == 3
    assert found(last_seen_after="2030-01-01T00:00:00Z") == []
    body = get("/api/v1/profiles", q="user_id:u1").json()["results"][0]
    assert body["traits"]["name"] == "Ada" and body["last_seen_at"] == "2026-11-01T10:00:00Z"


def test_search_pages_neither_repeat_nor_skip(get, people):
    seen, params = [], {"limit": 2}
    while True:
        body = get("/api/v1/profiles", **params).json()
        seen += [p["id"] for p in body["results"]]
        if body["next"] is None:
            break
        params = {"limit": 2, "cursor": body["next"]}
    assert seen == list(Profile.objects.order_by("-id").values_list("key", flat=True))


def test_profile_events_identities_merges(get, send, people):
    send(
        {"type": "track", "userId": "u1", "event": "Signed Up", "timestamp": "2026-11-02T10:00:00Z"},
        {"type": "page", "userId": "u1", "name": "Pricing", "timestamp": "2026-11-03T10:00:00Z"},
    )
    ada = people["u1"]
    assert get(f"/api/v1/profiles/{ada.key}").json()["traits"]["city"] == "London"
    assert get("/api/v1/profiles/email:ADA@example.com").json()["id"] == ada.key
    events = get("/api/v1/profiles/user_id:u1/events").json()
    assert [e["type"] for e in events["results"]] == ["page", "track", "identify"] and events["next"] is None
    assert [e["type"] for e in get("/api/v1/profiles/user_id:u1/events", type="track").json()["results"]] == ["track"]
    only = get("/api/v1/profiles/user_id:u1/events?type=track&type=page&order=asc").json()["results"]
    assert [e["type"] for e in only] == ["track", "page"]
    assert [e["name"] for e in get("/api/v1/profiles/user_id:u1/events", name="Pricing").json()["results"]] == [
        "Pricing"
    ]
    window = get("/api/v1/profiles/user_id:u1/events", start="2026-11-02T00:00:00Z", end="2026-11-03T00:00:00Z")
    assert [e["event"] for e in window.json()["results"]] == ["Signed Up"]
    first = get("/api/v1/profiles/user_id:u1/events", limit=2).json()
    rest = get("/api/v1/profiles/user_id:u1/events", limit=2, cursor=first["next"]).json()
    assert [e["id"] for e in first["results"] + rest["results"]] == [e["id"] for e in events["results"]]
    identities = get("/api/v1/profiles/user_id:u1/identities").json()["results"]
    assert {(i["type"], i["id"]) for i in identities} == {
        ("user_id", "u1"),
        ("anonymous_id", "a1"),
        ("email", "ada@example.com"),
    }
    assert all(i["first_message_id"] == Event.objects.get(type="identify", user_id="u1").message_id for i in identities)
    merges = get("/api/v1/profiles/user_id:u1/merges").json()
    assert merges["profile"] == ada.key and merges["merges"] == [] and len(merges["identities"]) == 3


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/api/v1/profiles/user_id:nobody", 404),
        ("/api/v1/profiles/use_nobody/events", 404),
        ("/api/v1/profiles/:x", 400),
        ("/api/v1/profiles?limit=0", 400),
        ("/api/v1/profiles?cursor=***", 400),
        ("/api/v1/profiles/user_id:u1/events?type=click", 400),
        ("/api/v1/profiles/user_id:u1/events?cursor=abc", 400),
        ("/api/v1/profiles/user_id:u1/events?start=tomorrow", 400),
    ],
)
def test_errors(get, people, path, status):
    response = get(path)
    assert response.status_code == status
    assert set(response.json()["error"]) == {"code", "message"}
    assert response["Request-Id"]


def test_token_auth_bearer_and_basic_and_refusals(client: Client, token, source, people):
    from tests.conftest import basic_auth

    assert client.get("/api/v1/profiles", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    assert client.get("/api/v1/profiles", headers={"Authorization": basic_auth(token)}).status_code == 200
    assert client.get("/api/v1/profiles").status_code == 401
    assert client.get("/api/v1/profiles", headers={"Authorization": basic_auth(source.write_key)}).status_code == 401


@pytest.mark.parametrize(
    ("path", "queries"),
    [
        # identity kinds, exact identifiers, email fragment, the page of profiles
        ("/api/v1/profiles?q=london", 4),
        ("/api/v1/profiles", 1),  # the page of profiles
        ("/api/v1/profiles/user_id:u1/events", 2),  # profile, one page of events
        ("/api/v1/profiles/user_id:u1/identities", 2),
        ("/api/v1/profiles/user_id:u1/merges", 7),
    ],
)
def test_query_counts_are_pinned(get, send, people, django_assert_num_queries, path, queries):
    send(*[{"type": "track", "userId": "u1", "event": f"E{i}", "timestamp": "2026-11-02T10:00:00Z"} for i in range(40)])
    get(path)  # the token is read and its last_used_at fresh: neither again for a second
    with django_assert_num_queries(queries):
        assert get(path).status_code == 200
