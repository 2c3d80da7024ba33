"""`/traits`, the Profile API's hot GET: its lean path answers every request exactly as DRF's
path does (status, body bytes, headers), and its one statement on PostgreSQL reads what the
separate reads do."""

from __future__ import annotations

import base64
from datetime import UTC, datetime

import pytest
from django.test import Client, override_settings

from profiles.api import lean
from profiles.models import Profile
from profiles.selectors import profile_lookup, profile_lookup_traits, profile_traits
from tests.api.conftest import BASE
from tests.conftest import basic_auth

pytestmark = pytest.mark.django_db

ENTERED = datetime(2026, 11, 5, 10, 0, 0, 120000, tzinfo=UTC)  # PostgreSQL writes it `.12`


@pytest.fixture
def ada(send, django_capture_on_commit_callbacks) -> Profile:
    from audiences.models import Audience, AudienceMember
    from profiles.computed.services import computed_trait_create

    send(
        {"type": "identify", "userId": "u1", "traits": {"name": "Ada", "plan": "pro", "city": "Paris\u2028"},
         "timestamp": "2026-11-01T10:00:00Z"},
        {"type": "track", "userId": "u1", "event": "Order Completed", "timestamp": "2026-11-02T10:00:00Z"},
    )  # fmt: skip
    with django_capture_on_commit_callbacks(execute=True):
        computed_trait_create(data={"key": "orders", "type": "counter", "event": "Order Completed"})
    profile = Profile.objects.get(merged_into__isnull=True)
    vip = Audience.objects.create(key="vip", name="VIP", rule={"event": "Order Completed"})
    AudienceMember.objects.create(audience=vip, profile_id=profile.pk, entered_at=ENTERED)
    return profile


def _next(key: str) -> str:
    return base64.urlsafe_b64encode(key.encode()).decode().rstrip("=")


QUERIES = [
    "", "limit=2", "limit=200", "limit=010", "limit=+5", "limit=0", "limit=201", "limit=abc", "limit=",
    "verbose=true", "verbose=True&include=name,orders,vip", "verbose=yes", "verbose=maybe",
    "class=audience", "class=computed_trait", "class=custom_trait", "class=friends", "class=",
    "include=name,%20plan,,", "include=", "include=%20name", f"next={_next('name')}&limit=1", "next=", "next=%25%25",
    "next=a%00b", "limt=5", "limit=1&limit=3", "format=json",
]  # fmt: skip


def _both(client: Client, monkeypatch, path: str, headers: dict[str, str]):
    lean_answer = client.get(path, headers=headers)
    with monkeypatch.context() as m:
        m.setattr(lean, "takes", lambda request: False)
        drf_answer = client.get(path, headers=headers)
    return lean_answer, drf_answer


def _same(ours, drf) -> None:
    assert ours.status_code == drf.status_code, (ours.content, drf.content)
    assert ours.content == drf.content
    for header in ("Content-Type", "Allow", "WWW-Authenticate", "Retry-After", "X-Frame-Options",
                   "X-Content-Type-Options"):  # fmt: skip
        assert ours.get(header) == drf.get(header), header
    assert ours["Request-Id"] and ours["Request-Id"] != drf["Request-Id"]


@pytest.mark.parametrize("query", QUERIES)
def test_the_lean_path_answers_every_query_as_drf_does(client: Client, monkeypatch, ada, token, query):
    _same(*_both(client, monkeypatch, f"{BASE}/user_id:u1/traits?{query}", {"Authorization": basic_auth(token)}))


@pytest.mark.parametrize(
    "identifier", ["user_id:u1", "email:nobody@example.com", "no-colon", "user_id:%20", "use_nobody", "user_id:a%00"]
)
def test_the_lean_path_resolves_and_refuses_identifiers_as_drf_does(
    client: Client, monkeypatch, ada, token, identifier
):
    _same(*_both(client, monkeypatch, f"{BASE}/{identifier}/traits", {"Authorization": basic_auth(token)}))
    other_space = f"/v1/spaces/elsewhere/collections/users/profiles/{identifier}/traits"
    _same(*_both(client, monkeypatch, other_space, {"Authorization": basic_auth(token)}))


def test_the_lean_path_refuses_and_limits_as_drf_does(client: Client, monkeypatch, ada, token, source):
    path = f"{BASE}/user_id:u1/traits"
    for headers in ({}, {"Authorization": basic_auth("cdp_pat_not-a-token")}, {"Authorization": "Basic !!!"},
                    {"Authorization": f"Bearer {source.write_key}"}, {"Authorization": f"Bearer {token}"},
                    {"Authorization": basic_auth(token), "Accept": "application/json, text/plain, */*"}):  # fmt: skip
        _same(*_both(client, monkeypatch, path, headers))
    with override_settings(CDP_API_RATE_LIMIT=0):  # every request is over the limit
        ours, drf = _both(client, monkeypatch, path, {"Authorization": basic_auth(token)})
    assert ours.status_code == 429
    _same(ours, drf)


def test_requests_the_lean_path_does_not_take_still_get_drfs_answers(client: Client, ada, token):
    path, auth = f"{BASE}/user_id:u1/traits", basic_auth(token)
    assert client.get(path, headers={"Authorization": auth, "Accept": "text/html"}).status_code == 406
    indented = client.get(path, headers={"Authorization": auth, "Accept": "application/json; indent=2"})
    assert indented.status_code == 200 and b'\n  "traits"' in indented.content
    assert client.head(path, headers={"Authorization": auth}).status_code == 200
    assert client.post(path, {}, headers={"Authorization": auth}).status_code == 403


@pytest.mark.postgres
@pytest.mark.parametrize("trait_class", [None, "custom_trait", "computed_trait", "audience"])
@pytest.mark.parametrize(("kind", "value"), [("user_id", "u1"), ("email", "nobody@example.com")])
def test_one_statement_reads_what_the_separate_reads_do(ada, trait_class, kind, value):
    found = profile_lookup_traits(kind=kind, value=value, trait_class=trait_class)
    profile = profile_lookup(kind=kind, value=value)
    if profile is None:
        assert found is None
        return
    assert found is not None and found[0] == profile
    assert found[1] == profile_traits(profile=profile, trait_class=trait_class)
    if trait_class in (None, "audience"):
        assert found[1]["vip"].updated_at == "2026-11-05T10:00:00.120000Z"
