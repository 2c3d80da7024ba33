"""Segment's Profile API through HTTP: shapes held against the spec's examples (§5), auth,
pagination, merged-away identifiers, and pinned query counts."""

from __future__ import annotations

import pytest
from django.test import Client, override_settings

from profiles.models import Event, Profile
from tests.api.conftest import BASE
from tests.conftest import basic_auth

pytestmark = pytest.mark.django_db


def identify(user_id, anonymous_id=None, t="2026-11-01T10:00:00Z", **traits):
    return {"type": "identify", "userId": user_id, "anonymousId": anonymous_id, "traits": traits, "timestamp": t}


def track(user_id, event, t, **properties):
    return {"type": "track", "userId": user_id, "event": event, "properties": properties, "timestamp": t}


@pytest.fixture
def ada(send):
    send(
        identify("u1", "a1", first_name="Bob", emails_opened_last_30_days=33, email="Ada@Example.com"),
        track("u1", "Order Completed", "2026-11-02T10:00:00Z", revenue=42),
        {
            "type": "page",
            "userId": "u1",
            "name": "Pricing",
            "properties": {"url": "https://x/p"},
            "timestamp": "2026-11-03T10:00:00Z",
        },
        {
            "type": "group",
            "userId": "u1",
            "groupId": "acme",
            "traits": {"name": "Acme"},
            "timestamp": "2026-11-04T10:00:00Z",
        },
    )
    return Profile.objects.get(merged_into__isnull=True)


def test_traits_shape_as_in_the_spec(get, ada):
    response = get(f"{BASE}/user_id:u1/traits")
    assert response.status_code == 200
    assert response["Request-Id"]
    body = response.json()
    assert body["traits"] == {"first_name": "Bob", "emails_opened_last_30_days": 33, "email": "Ada@Example.com"}
    assert body["cursor"] == {
        "url": f"/v1/spaces/default/collections/users/profiles/{ada.key}/traits",
        "has_more": False,
        "next": "",
        "limit": 10,
    }
    verbose = get(f"{BASE}/email:ada@example.com/traits", verbose="true", include="first_name").json()
    assert list(verbose["traits"]) == ["first_name"]
    entry = verbose["traits"]["first_name"]
    assert entry["value"] == "Bob"
    assert entry["source_id"] == str(Event.objects.first().source_id)
    assert entry["updated_at"].startswith("2026-11-01T10:00:00")
    assert get(f"{BASE}/user_id:u1/traits", **{"class": "audience"}).json()["traits"] == {}


def test_traits_pages_by_cursor(get, ada):
    seen, params = [], {"limit": 2}
    while True:
        body = get(f"{BASE}/{ada.key}/traits", **params).json()
        seen += list(body["traits"])
        if not body["cursor"]["has_more"]:
            assert body["cursor"]["next"] == ""
            break
        params = {"limit": 2, "next": body["cursor"]["next"]}
    assert seen == sorted(ada.traits)


def test_external_ids_shape_and_include(get, ada, source):
    body = get(f"{BASE}/user_id:u1/external_ids").json()
    by_type = {row["type"]: row for row in body["data"]}
    assert set(by_type) == {"user_id", "anonymous_id", "email"}
    assert by_type["email"] == {
        "id": "ada@example.com",
        "type": "email",
        "source_id": str(source.id),
        "collection": "users",
        "created_at": "2026-11-01T10:00:00Z",
        "encoding": "none",
        "first_message_id": Event.objects.get(type="identify").message_id,
    }
    only = get(f"{BASE}/user_id:u1/external_ids", include="user_id,anonymous_id").json()["data"]
    assert sorted(row["type"] for row in only) == ["anonymous_id", "user_id"]
    page = get(f"{BASE}/user_id:u1/external_ids", limit=2).json()
    assert len(page["data"]) == 2 and page["cursor"]["has_more"] is True
    rest = get(f"{BASE}/user_id:u1/external_ids", limit=2, next=page["cursor"]["next"]).json()
    assert [r["id"] for r in page["data"] + rest["data"]] == [r["id"] for r in body["data"]]


def test_events_shape_every_type_and_filters(get, ada, source):
    body = get(f"{BASE}/user_id:u1/events").json()
    assert [e["type"] for e in body["data"]] == ["group", "page", "track", "identify"]  # newest first
    order = body["data"][2]
    assert order == {
        "external_ids": [
            {"id": "u1", "type": "user_id", "source_id": str(source.id), "collection": "users", "encoding": "none"}
        ],
        "context": order["context"],
        "type": "track",
        "message_id": Event.objects.get(type="track").message_id,
        "source_id": str(source.id),
        "timestamp": "2026-11-02T10:00:00Z",
        "properties": {"revenue": 42},
        "traits": {},
        "event": "Order Completed",
        "name": None,
        "related": {"users": ada.key},
    }
    assert body["data"][1]["event"] == "Page Viewed"  # page calls read as Segment shows them
    names = lambda **p: [e["event"] or e["type"] for e in get(f"{BASE}/user_id:u1/events", **p).json()["data"]]  # noqa: E731
    assert names(sort="asc") == ["identify", "Order Completed", "Page Viewed", "group"]
    assert names(include="Order Completed") == ["Order Completed"]
    assert names(exclude="Order Completed") == ["group", "Page Viewed", "identify"]
    assert names(start="2026-11-02T00:00:00Z", end="2026-11-04T00:00:00Z") == ["Page Viewed", "Order Completed"]


def test_event_pages_neither_repeat_nor_skip(get, send):
    send(*[track("u1", f"E{i}", "2026-11-01T10:00:00Z") for i in range(7)])  # equal timestamps
    send(*[track("u1", f"F{i}", f"2026-11-0{i + 2}T10:00:00Z") for i in range(4)])
    expected = list(Event.objects.order_by("-timestamp", "-id").values_list("message_id", flat=True))
    seen, params = [], {"limit": 3}
    while True:
        body = get(f"{BASE}/user_id:u1/events", **params).json()
        seen += [e["message_id"] for e in body["data"]]
        if not body["cursor"]["has_more"]:
            break
        send(track("u1", "Late", "2026-10-01T00:00:00Z"))  # arrives while paging, older than the page
        params = {"limit": 3, "next": body["cursor"]["next"]}
    assert seen[: len(expected)] == expected
    assert len(seen) == len(set(seen))


def test_metadata_and_links(get, ada, source):
    meta = get(f"{BASE}/user_id:u1/metadata").json()["metadata"]
    assert meta["first_message_id"] == Event.objects.get(type="identify").message_id
    assert meta["last_message_id"] == Event.objects.get(type="group").message_id
    assert meta["first_source_id"] == meta["last_source_id"] == str(source.id)
    assert meta["expires_at"] is None and meta["created_at"] and meta["updated_at"]
    links = get(f"{BASE}/user_id:u1/links").json()
    assert links["data"] == [
        {
            "to_collection": "accounts",
            "external_ids": [
                {
                    "id": "acme",
                    "type": "group_id",
                    "source_id": str(source.id),
                    "collection": "accounts",
                    "created_at": "2026-11-04T10:00:00Z",
                    "encoding": "none",
                    "first_message_id": None,
                }
            ],
        }
    ]


def test_lookups_through_merged_away_identifiers_and_use_ids(get, send):
    send(identify(None, "phone", email="x@example.com", plan="pro"))
    send(identify("u2", "laptop", name="X"))
    loser = Profile.objects.get(identities__value="u2")
    send(identify("u2", "laptop", t="2026-11-02T10:00:00Z", email="x@example.com"))  # laptop's profile merges away
    loser.refresh_from_db()
    winner = Profile.objects.get(id=loser.merged_into_id)
    for ident in (
        "user_id:u2",
        "anonymous_id:laptop",
        loser.key,
        winner.key,
        f"segment_id:{loser.key}",
        "email:X@example.com",
    ):
        body = get(f"{BASE}/{ident}/traits").json()
        assert body["cursor"]["url"].endswith(f"/{winner.key}/traits"), ident
        assert body["traits"]["plan"] == "pro"
    merges = get(f"{BASE}/user_id:u2/merges").json()
    assert merges["profile"] == winner.key
    assert [(m["winner"], m["loser"]) for m in merges["merges"]] == [(winner.key, loser.key)]
    assert {(i["type"], i["id"]) for i in merges["identities"]} >= {("user_id", "u2"), ("anonymous_id", "phone")}
    assert all(i["first_message_id"] for i in merges["identities"])


@pytest.mark.parametrize(
    ("path", "status", "code"),
    [
        (f"{BASE}/user_id:nobody/traits", 404, "not_found"),
        ("/v1/spaces/other/collections/users/profiles/user_id:u1/traits", 404, "not_found"),
        ("/v1/spaces/default/collections/accounts/profiles/group_id:acme/traits", 404, "not_found"),
        (f"{BASE}/user_id:u1/nonsense", 404, "not_found"),
        (f"{BASE}/no-colon/traits", 400, "validation_error"),
        (f"{BASE}/user_id:u1/traits?limit=0", 400, "validation_error"),
        (f"{BASE}/user_id:u1/traits?limit=201", 400, "validation_error"),
        (f"{BASE}/user_id:u1/traits?class=friends", 400, "validation_error"),
        (f"{BASE}/user_id:u1/events?sort=sideways", 400, "validation_error"),
        (f"{BASE}/user_id:u1/events?start=yesterday", 400, "validation_error"),
        (f"{BASE}/user_id:u1/events?next=bm9wZQ", 400, "validation_error"),
        (f"{BASE}/user_id:u1/traits?next=%25%25", 400, "validation_error"),
    ],
)
def test_errors_have_the_spec_shape(get, ada, path, status, code):
    response = get(path)
    assert response.status_code == status, response.content
    assert response.json()["error"]["code"] == code
    assert response.json()["error"]["message"]
    if status == 404 and "nobody" in path:
        assert response.json() == {"error": {"code": "not_found", "message": "Profile was not found."}}


def test_auth_failures(client: Client, ada, source, token):
    path = f"{BASE}/user_id:u1/traits"
    for headers in (
        {},
        {"Authorization": basic_auth("cdp_pat_not-a-real-token")},
        {"Authorization": basic_auth(source.write_key)},  # a write key is never a token
        {"Authorization": f"Bearer {source.write_key}"},
        {"Authorization": "Basic !!!"},
        {"Authorization": "Token abc"},
    ):
        response = client.get(path, headers=headers)
        assert response.status_code == 401, headers
        assert response.json()["error"]["code"] == "authentication_error"
        assert response["WWW-Authenticate"] == 'Basic realm="cdp"'
        assert response["Request-Id"]
    assert client.get(path, headers={"Authorization": f"Bearer {token}"}).status_code == 200
    assert client.get(path, headers={"Authorization": basic_auth(token, colon=False)}).status_code == 200
    assert client.post(path, {}, headers={"Authorization": basic_auth(token)}).status_code == 403  # read-only


def test_no_cors_on_the_profile_api_but_still_on_tracking(client: Client, get, ada):
    origin = {"Origin": "https://evil.example"}
    assert "Access-Control-Allow-Origin" not in client.get(f"{BASE}/user_id:u1/traits", headers=origin)
    assert (
        client.options("/v1/track", headers={**origin, "Access-Control-Request-Method": "POST"})[
            "Access-Control-Allow-Origin"
        ]
        == "*"
    )


@override_settings(CDP_SPACE_ID="prod")
def test_space_id_from_settings(get, ada):
    assert get(f"{BASE}/user_id:u1/traits").status_code == 404
    assert get("/v1/spaces/prod/collections/users/profiles/user_id:u1/traits").status_code == 200


@override_settings(CDP_API_RATE_LIMIT=3)
def test_rate_limit_is_429_per_token(get, ada, token):
    from django.core.cache import cache

    cache.clear()
    from profiles.services.tokens import access_token_create

    other = access_token_create(name="other")[1]
    statuses = [get(f"{BASE}/user_id:u1/traits").status_code for _ in range(6)]
    # One-second windows: at most 3 pass in any window, and at most 2 windows are touched.
    assert statuses.count(429) >= 1 and statuses.count(200) <= 6 - 1
    limited = next(r for r in (get(f"{BASE}/user_id:u1/traits") for _ in range(5)) if r.status_code == 429)
    assert limited.json()["error"]["code"] == "rate_limit_error"
    assert int(limited["Retry-After"]) >= 1
    assert get(f"{BASE}/user_id:u1/traits", key=other).status_code == 200  # another token has its own budget


@pytest.mark.parametrize(
    ("resource", "queries"),
    [("traits", 3), ("external_ids", 2), ("events", 2), ("metadata", 3), ("links", 2), ("merges", 7)],
)
def test_query_counts_are_pinned(get, send, django_assert_num_queries, resource, queries):
    from django.db import connection

    send(*[track("u1", f"E{i}", f"2026-11-01T10:{i:02d}:00Z") for i in range(30)])
    send(identify("u1", "a1", email="x@example.com", plan="pro"))
    send({"type": "group", "userId": "u1", "groupId": "g1", "timestamp": "2026-11-04T10:00:00Z"})
    get(f"{BASE}/user_id:u1/{resource}")  # the token is read, its last_used_at fresh: none of either for a second
    if resource == "traits" and connection.vendor == "postgresql":
        queries = 1  # the profile with its computed traits and audiences, in one statement
    with django_assert_num_queries(queries):  # the profile, then the resource's own reads
        params = {} if resource == "metadata" else {"limit": 20}  # metadata takes no limit
        assert get(f"{BASE}/user_id:u1/{resource}", **params).status_code == 200


def test_an_unknown_query_parameter_is_refused_not_ignored(get, ada):
    response = get(f"{BASE}/user_id:u1/events", limt=5)  # misspelt
    assert response.status_code == 400
    assert response.json()["error"] == {"code": "validation_error", "message": "limt: Unknown query parameter."}


@override_settings(REDIS_URL="redis://127.0.0.1:9/0")  # nothing listens there
def test_lookups_still_answer_when_the_rate_counter_is_down(get, ada, caplog):
    assert get(f"{BASE}/user_id:u1/traits").status_code == 200
    assert "Rate limit not counted: Redis is unavailable." in caplog.text


def test_links_page_through_every_group_with_next(get, send):
    groups = [
        {"type": "group", "userId": "u9", "groupId": f"g{i:02d}", "timestamp": f"2026-11-01T10:{i // 2:02d}:00Z"}
        for i in range(25)
    ]  # two groups a minute: ties on created_at are ordered by group id
    send(*groups)
    seen, params = [], {"limit": "10"}
    for _ in range(5):
        body = get(f"{BASE}/user_id:u9/links", **params).json()
        seen += [link["id"] for link in body["data"][0]["external_ids"]] if body["data"] else []
        if not body["cursor"]["has_more"]:
            assert body["cursor"]["next"] == ""
            break
        assert body["cursor"]["next"]
        params = {"limit": "10", "next": body["cursor"]["next"]}
    assert seen == [f"g{i:02d}" for i in range(25)]
    assert get(f"{BASE}/user_id:u9/links", next="not-a-cursor").status_code == 400


def test_computed_traits_are_traits_and_their_own_class(get, ada, django_capture_on_commit_callbacks):
    from profiles.computed.services import computed_trait_create

    with django_capture_on_commit_callbacks(execute=True):
        computed_trait_create(data={"key": "orders", "type": "counter", "event": "Order Completed"})
    everything = get(f"{BASE}/user_id:u1/traits", limit="50").json()["traits"]
    assert everything["orders"] == 1 and everything["first_name"] == "Bob"
    only = get(f"{BASE}/user_id:u1/traits", **{"class": "computed_trait"}).json()["traits"]
    assert only == {"orders": 1}
    assert "orders" not in get(f"{BASE}/user_id:u1/traits", **{"class": "custom_trait"}).json()["traits"]
    verbose = get(f"{BASE}/user_id:u1/traits", verbose="true", include="orders").json()["traits"]["orders"]
    assert verbose["value"] == 1 and verbose["class"] == "computed_trait" and verbose["definition"] == "orders"
    assert verbose["computed_at"].endswith("Z") and verbose["source_id"] is None


def test_a_stalled_rate_counter_costs_a_lookup_its_short_timeout_only(get, ada, caplog):
    """A Redis that accepts and never answers: the lookup is served uncounted after the
    cache's 50 ms timeout, not after seconds (or never)."""
    import time

    from tests.outage import StalledServer

    get(f"{BASE}/user_id:u1/traits")  # the first request pays for imports and the database connection
    with StalledServer() as stalled, override_settings(REDIS_URL=f"redis://127.0.0.1:{stalled.port}/0"):
        start = time.perf_counter()
        response = get(f"{BASE}/user_id:u1/traits")
        took = time.perf_counter() - start
        assert stalled.accepted == 1
    assert response.status_code == 200 and response.json()["traits"]
    assert took < 0.3, took
    assert "Rate limit not counted: Redis is unavailable." in caplog.text
