"""`/api/v1/audiences` through HTTP: define by rule or by query, read with size, status and
version, preview, members now and at a past moment, history, sizes, compute (202), delete;
the Profile API's class=audience and the REST profile's audiences; write tokens only; errors
in the one shape, naming the bad node."""

from __future__ import annotations

import pytest

from audiences.models import Membership
from tests.api.conftest import BASE

pytestmark = pytest.mark.django_db
URL = "/api/v1/audiences"
OPENED = {"all": [{"event": "Email Opened", "window": {"within_days": 180}},
                  {"not": {"event": "Order Completed", "window": {"within_days": 180}}}]}  # fmt: skip


@pytest.fixture
def people(send):
    send(*[{"type": "track", "userId": f"u{i}", "event": "Email Opened"} for i in range(1, 6)],
         {"type": "track", "userId": "u5", "event": "Order Completed"},
         *[{"type": "page", "userId": "u1", "name": "Home"} for _ in range(5)])  # fmt: skip


def test_create_read_members_history_and_delete(people, api, get, send):
    created = api("post", URL, {"key": "opened_not_bought", "name": "Opened, not bought", "rule": OPENED})
    assert created.status_code == 201, created.content
    assert created.json()["version"] == 1 and created.json()["status"] == "preparing"
    audience = api("get", f"{URL}/opened_not_bought").json()
    assert audience["status"] == "live" and audience["size"] == 4 and audience["time_dependent"] is True
    assert audience["query"] == (
        "event('Email Opened').within(180 days).count() >= 1 AND NOT event('Order Completed').within(180 days)"
        ".count() >= 1"
    )
    members = api("get", f"{URL}/opened_not_bought/members", limit=3).json()
    assert len(members["data"]) == 3 and members["cursor"]["has_more"] is True
    rest = api("get", f"{URL}/opened_not_bought/members", limit=3, next=members["cursor"]["next"]).json()
    assert len(rest["data"]) == 1 and rest["cursor"] == {"next": None, "has_more": False}
    before = Membership.objects.order_by("entered_at").first().entered_at

    send({"type": "track", "userId": "u2", "event": "Order Completed"})
    assert api("get", f"{URL}/opened_not_bought").json()["size"] == 3
    then = api("get", f"{URL}/opened_not_bought/members", at=before.isoformat()).json()
    assert len(then["data"]) == 4  # who was in at that moment
    history = api("get", f"{URL}/opened_not_bought/history").json()["data"]
    assert len(history) == 4 and {h["entry_cause"] for h in history} == {"rule v1"}
    assert [h["exit_cause"] for h in history if h["exited_at"]] == ["event Order Completed"]
    sizes = api("get", f"{URL}/opened_not_bought/sizes", days=7).json()["data"]
    assert len(sizes) == 7 and sizes[-1] == {"date": sizes[-1]["date"], "size": 3, "entered": 4, "exited": 1}

    traits = get(f"{BASE}/user_id:u1/traits", **{"class": "audience"}).json()["traits"]
    assert traits == {"opened_not_bought": True}
    profile = api("get", "/api/v1/profiles/user_id:u1").json()
    assert [a["key"] for a in profile["audiences"]] == ["opened_not_bought"]

    assert api("post", f"{URL}/opened_not_bought/compute").status_code == 202
    assert api("delete", f"{URL}/opened_not_bought").status_code == 204
    assert api("get", f"{URL}/opened_not_bought").status_code == 404


def test_an_audience_from_segments_query_language(people, api):
    created = api("post", URL, {"key": "frequent", "query": "event('Page Viewed').within(30 days).count() >= 5"})
    assert created.status_code == 201, created.content
    audience = api("get", f"{URL}/frequent").json()
    assert audience["rule"] == {
        "event": "Page Viewed",
        "window": {"within_days": 30},
        "count": {"op": ">=", "value": 5},
    }
    assert audience["size"] == 1


def test_preview_counts_each_node(people, api):
    preview = api("post", f"{URL}/preview", {"rule": OPENED})
    assert preview.status_code == 200, preview.content
    body = preview.json()
    assert body["size"] == 4 and len(body["sample"]) == 4 and body["sample"][0]["id"].startswith("use_")
    assert body["conditions"] == [{"path": "$", "size": 4}, {"path": "$.all[0]", "size": 5},
                                  {"path": "$.all[1]", "size": 4}, {"path": "$.all[1].not", "size": 1}]  # fmt: skip


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"key": "a", "rule": {"all": [{"event": "X", "where": [{"property": "p", "op": "~", "value": 1}]}]}},
         "rule.all[0].where[0].op: Unknown operator '~'"),
        ({"key": "a", "rule": {"event": "X", "count": {"op": ">=", "value": "five"}}},
         "rule.count.value: The count must be a whole number."),
        ({"key": "a", "rule": {"trait": "nobody_has_this", "op": "=", "value": 1}}, "rule: Unknown trait"),
        ({"key": "a", "rule": {"audience": "missing"}}, "rule: Unknown audience 'missing'."),
        ({"key": "a", "rule": {"audience": "a"}}, "would create a cycle: a → a"),
        ({"key": "a", "query": "event('X').count() >= "}, "query: at 22"),
        ({"key": "a", "rule": {"event": "X"}, "query": "event('X')"}, "not both"),
        ({"key": "Bad Key", "rule": {"event": "X"}}, "key"),
        ({"key": "a", "rule": {"event": "X"}, "colour": "red"}, "colour"),
    ],
)  # fmt: skip
def test_bad_rules_name_the_node(api, body, message):
    response = api("post", URL, body)
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["code"] == "validation_error" and message in error["message"], error


def test_a_cycle_between_audiences_is_refused(people, api):
    assert api("post", URL, {"key": "a", "rule": {"event": "Email Opened"}}).status_code == 201
    assert api("post", URL, {"key": "b", "rule": {"audience": "a"}}).status_code == 201
    response = api("patch", f"{URL}/a", {"rule": {"audience": "b"}})
    assert response.status_code == 400 and "would create a cycle: a → b → a" in response.json()["error"]["message"]
    response = api("delete", f"{URL}/a")
    assert response.status_code == 400 and "used by b" in response.json()["error"]["message"]


def test_a_read_only_token_cannot_write(api, token):
    response = api("post", URL, {"key": "a", "rule": {"event": "X"}}, token=token)
    assert response.status_code == 403 and response.json()["error"]["code"]
    assert api("get", URL, token=token).status_code == 200
