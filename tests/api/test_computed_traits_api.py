"""`/api/v1/computed-traits` through HTTP: create, read, change, delete, compute (202) and the
value distribution; write tokens only; errors in the one shape, naming the bad field."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import call_command

from audit.models import AuditEntry
from profiles.models import AccessToken, ComputedTrait
from tests.api.conftest import BASE

pytestmark = pytest.mark.django_db
URL = "/api/v1/computed-traits"


@pytest.fixture
def shop(send):
    send(*[{"type": "track", "userId": f"u{i}", "event": "Order Completed", "properties": {"revenue": i * 10}}
           for i in range(1, 6)])  # fmt: skip


def test_create_read_change_compute_and_delete(shop, api, get):
    body = {"key": "spend", "name": "Total spend", "type": "sum", "event": "Order Completed", "property": "revenue"}
    created = api("post", URL, body)
    assert created.status_code == 201, created.content
    assert created.json()["key"] == "spend" and created.json()["status"] == "computing"
    trait = api("get", f"{URL}/spend").json()
    assert trait["status"] == "live" and trait["profiles_with_value"] == 5 and trait["property"] == "revenue"
    assert get(f"{BASE}/user_id:u3/traits", **{"class": "computed_trait"}).json()["traits"] == {"spend": 30}
    values = api("get", f"{URL}/spend/values").json()
    assert values["kind"] == "numbers" and values["profiles"] == 5 and values["min"] == 10 and values["max"] == 50
    changed = api("patch", f"{URL}/spend", {"where": [{"property": "revenue", "op": ">", "value": 25}]})
    assert changed.status_code == 200 and changed.json()["where"][0]["op"] == ">"
    assert api("get", f"{URL}/spend").json()["profiles_with_value"] == 3
    assert api("post", f"{URL}/spend/compute").status_code == 202
    assert [t["key"] for t in api("get", URL).json()["results"]] == ["spend"]
    assert api("delete", f"{URL}/spend").status_code == 204
    assert api("get", f"{URL}/spend").status_code == 404
    assert get(f"{BASE}/user_id:u3/traits", **{"class": "computed_trait"}).json()["traits"] == {}
    actions = list(AuditEntry.objects.order_by("id").values_list("action", "actor_name"))
    assert [a for a, _ in actions] == ["add", "change", "recompute", "delete"] and "tests that write" in actions[0][1]


def test_a_trait_created_disabled_says_so_and_computes_when_enabled(shop, api):
    body = {"key": "spend", "type": "sum", "event": "Order Completed", "property": "revenue", "enabled": False}
    assert api("post", URL, body).json()["status"] == "disabled"
    assert api("get", f"{URL}/spend").json()["status"] == "disabled"
    assert api("post", f"{URL}/spend/compute").status_code == 400
    enabled = api("patch", f"{URL}/spend", {"enabled": True})
    assert enabled.status_code == 200
    trait = api("get", f"{URL}/spend").json()
    assert trait["status"] == "live" and trait["profiles_with_value"] == 5


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"key": "x", "type": "counter", "event": "A", "where": [{"property": "p", "op": "≈", "value": 1}]},
         "where[0].op"),
        ({"key": "x", "type": "sum", "event": "A"}, "property"),
        ({"key": "Bad", "type": "counter", "event": "A"}, "key"),
        ({"key": "x", "type": "score", "rules": [{"event": "A", "points": 1, "where": [{"op": "="}]}]},
         "rules[0].where[0].property"),
    ],
)  # fmt: skip
def test_a_bad_definition_is_a_400_naming_the_field(api, body, field):
    response = api("post", URL, body)
    assert response.status_code == 400
    error = response.json()["error"]
    assert set(error) == {"code", "message"} and error["code"] == "validation_error"
    assert error["message"].startswith(f"{field}: ")
    assert not ComputedTrait.objects.exists()


def test_a_read_only_token_reads_but_never_writes(api, token):
    assert api("get", URL, token=token).status_code == 200
    refused = api("post", URL, {"key": "x", "type": "counter", "event": "A"}, token=token)
    assert refused.status_code == 403 and "read-only" in refused.json()["error"]["message"]
    assert not ComputedTrait.objects.exists()


def test_the_command_makes_write_tokens_only_when_asked():
    out = StringIO()
    call_command("create_access_token", "Terraform", "--write", stdout=out)
    assert "read and write" in out.getvalue() and AccessToken.objects.get(name="Terraform").can_write
    call_command("create_access_token", "Dashboard", stdout=StringIO())
    assert not AccessToken.objects.get(name="Dashboard").can_write


def test_the_key_never_changes(api):
    api("post", URL, {"key": "orders", "type": "counter", "event": "A"})
    response = api("patch", f"{URL}/orders", {"key": "orders_v2"})
    assert response.status_code == 400 and response.json()["error"]["message"].startswith("key: ")
