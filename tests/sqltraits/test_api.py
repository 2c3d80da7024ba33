"""`/api/v1/sql-traits` through HTTP: list, create, read, change, delete, run (202) and runs;
write tokens only; errors in the one shape, naming the bad field; the list's query count."""

from __future__ import annotations

import orjson
import pytest

from audit.models import AuditEntry
from profiles.services.tokens import access_token_create
from sqltraits.models import SqlTrait, SqlTraitRun
from tests.api.conftest import BASE
from tests.conftest import basic_auth

pytestmark = pytest.mark.django_db
URL = "/api/v1/sql-traits"
# A query with no table: the run's own connection sees only what is committed, and these
# tests run inside a transaction (tests/sqltraits/test_runs.py reads real tables).
VIP = {"key": "vip", "name": "VIP", "query": "SELECT 'u1' AS user_id, 'gold' AS tier, 3 AS open_tickets"}


@pytest.fixture
def token(db):
    return access_token_create(name="reader")[1]


@pytest.fixture
def write_token(db):
    return access_token_create(name="terraform", can_write=True)[1]


@pytest.fixture
def api(client, write_token, django_capture_on_commit_callbacks):
    """`api(method, path, body)` with a token that may write; what the request enqueued runs."""

    def _call(method, path, body=None, token=write_token):
        with django_capture_on_commit_callbacks(execute=True):
            return getattr(client, method)(path, data=orjson.dumps(body) if body is not None else None,
                                           content_type="application/json",
                                           headers={"Authorization": f"Bearer {token}"})  # fmt: skip

    return _call


def test_create_read_change_run_and_delete(api, client, token):
    created = api("post", URL, VIP)
    assert created.status_code == 201, created.content
    body = created.json()
    assert (body["key"], body["identifier"], body["every_hours"], body["enabled"]) == ("vip", "user_id", 12, True)
    assert body["last_run"] == {"at": None, "status": "", "error": ""} and body["source_id"]
    assert api("get", f"{URL}/vip").json()["query"] == VIP["query"]
    assert [t["key"] for t in api("get", URL, token=token).json()["results"]] == ["vip"]

    changed = api("patch", f"{URL}/vip", {"every_hours": 1, "name": "Very important"})
    assert changed.status_code == 200 and changed.json()["every_hours"] == 1

    started = api("post", f"{URL}/vip/run")
    assert started.status_code == 202
    run_id = started.json()["run"]
    assert started.json() == {"key": "vip", "run": run_id, "status": "queued"}
    runs = api("get", f"{URL}/vip/runs").json()["results"]
    assert [(r["id"], r["status"], r["rows"], r["people_sent"], r["values_changed"]) for r in runs] == [
        (run_id, "succeeded", 1, 1, 2)
    ]
    assert runs[0]["trigger"] == "api" and "terraform" in runs[0]["requested_by"] and runs[0]["skipped_reasons"] == {}
    assert api("get", f"{URL}/vip").json()["last_run"]["status"] == "succeeded"
    profile = client.get(f"{BASE}/user_id:u1/traits", headers={"Authorization": basic_auth(token)}).json()
    assert profile["traits"] == {"tier": "gold", "open_tickets": 3}

    assert api("delete", f"{URL}/vip").status_code == 204
    assert api("get", f"{URL}/vip").status_code == 404
    actions = list(AuditEntry.objects.order_by("id").values_list("action", "actor_name"))
    assert [a for a, _ in actions] == ["add", "change", "run", "delete"] and "terraform" in actions[0][1]


def test_a_run_already_under_way_is_the_answer(api):
    api("post", URL, VIP)
    trait = SqlTrait.objects.get()
    running = SqlTraitRun.objects.create(trait=trait, trigger="schedule", status="running")
    answer = api("post", f"{URL}/vip/run")
    assert answer.status_code == 202 and answer.json() == {"key": "vip", "run": running.pk, "status": "running"}
    assert SqlTraitRun.objects.count() == 1


def test_a_failed_run_shows_its_error(api):
    api("post", URL, {**VIP, "query": "SELECT 'u1' AS email, 1 AS x"})
    api("post", f"{URL}/vip/run")
    (run,) = api("get", f"{URL}/vip/runs").json()["results"]
    assert run["status"] == "failed" and "no 'user_id' column" in run["error"]
    assert api("get", f"{URL}/vip").json()["last_run"]["status"] == "failed"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({**VIP, "query": "DELETE FROM tickets"}, "query"),
        ({**VIP, "query": "SELECT 1; DROP TABLE tickets"}, "query"),
        ({**VIP, "query": 5}, "query"),
        ({**VIP, "key": "Not Snake"}, "key"),
        ({**VIP, "identifier": "phone"}, "identifier"),
        ({**VIP, "every_hours": "12"}, "every_hours"),
        ({**VIP, "every_hours": 0}, "every_hours"),
        ({**VIP, "enabled": "yes"}, "enabled"),
        ({**VIP, "colour": "red"}, "colour"),
        ({"key": "vip"}, "query"),
    ],
)
def test_a_bad_definition_is_a_400_naming_the_field(api, body, field):
    response = api("post", URL, body)
    assert response.status_code == 400
    error = response.json()["error"]
    assert set(error) == {"code", "message"} and error["code"] == "validation_error"
    assert error["message"].startswith(f"{field}: "), error
    assert not SqlTrait.objects.exists()


def test_the_key_is_taken_once_and_never_changes(api):
    api("post", URL, VIP)
    again = api("post", URL, VIP)
    assert again.status_code == 400 and again.json()["error"]["message"].startswith("key: ")
    renamed = api("patch", f"{URL}/vip", {"key": "vip_two"})
    assert renamed.status_code == 400 and renamed.json()["error"]["message"].startswith("key: ")
    refused = api("patch", f"{URL}/vip", {"query": "UPDATE tickets SET status = 'x'"})
    assert refused.status_code == 400 and refused.json()["error"]["message"].startswith("query: ")
    assert SqlTrait.objects.get().query == VIP["query"]


def test_a_read_only_token_reads_but_never_writes_or_runs(api, token):
    api("post", URL, VIP)
    assert api("get", URL, token=token).status_code == 200
    assert api("get", f"{URL}/vip/runs", token=token).status_code == 200
    for method, path, body in [("post", URL, {**VIP, "key": "other"}), ("patch", f"{URL}/vip", {"every_hours": 2}),
                               ("delete", f"{URL}/vip", None), ("post", f"{URL}/vip/run", None)]:  # fmt: skip
        refused = api(method, path, body, token=token)
        assert refused.status_code == 403 and "read-only" in refused.json()["error"]["message"], (method, path)
    assert SqlTrait.objects.get().every_hours == 12 and not SqlTraitRun.objects.exists()
    assert api("get", URL, token="cdp_pat_nope").status_code == 401


@pytest.mark.parametrize(("method", "suffix"), [("get", ""), ("patch", ""), ("delete", ""), ("post", "/run"),
                                                ("get", "/runs")])  # fmt: skip
def test_an_unknown_key_is_a_404(api, method, suffix):
    response = api(method, f"{URL}/nope{suffix}", {"every_hours": 2} if method == "patch" else None)
    assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"


def test_runs_take_a_limit_and_refuse_unknown_parameters(api):
    api("post", URL, VIP)
    trait = SqlTrait.objects.get()
    SqlTraitRun.objects.bulk_create([SqlTraitRun(trait=trait, trigger="schedule", status="succeeded")] * 3)
    assert len(api("get", f"{URL}/vip/runs?limit=2").json()["results"]) == 2
    assert api("get", f"{URL}/vip/runs?limit=0").status_code == 400
    assert api("get", f"{URL}/vip/runs?colour=red").json()["error"]["message"].startswith("colour: ")


def test_the_list_reads_a_fixed_number_of_queries(api, django_assert_num_queries):
    for key in ("a", "b"):
        api("post", URL, {**VIP, "key": key})
    api("get", URL)  # the token's last_used_at is refreshed once a minute: not in the count
    with django_assert_num_queries(1):  # the definitions (the token is kept a second in process)
        assert len(api("get", URL).json()["results"]) == 2
    for key in ("c", "d", "e"):
        api("post", URL, {**VIP, "key": key})
    with django_assert_num_queries(1):
        assert len(api("get", URL).json()["results"]) == 5
