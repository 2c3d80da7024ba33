"""PostgreSQL unreachable (a real closed port): every endpoint answers what its users can act
on, never Django's HTML 500. The tracking API and webhooks: Segment's `{"code", "message"}`,
503, Retry-After. The Profile API and /api/v1/: `{"error": {"code", "message"}}`, 503,
Retry-After. The pixel: its GIF (the miss counted). A tracked link: a plain 503 page, never a
redirect. /healthz stays 200 (the process answers); /readyz is 503 and names PostgreSQL."""

from __future__ import annotations

import base64
import os
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any

import orjson
import pytest
from django.core.cache import cache
from django.db import connections

from ingest.missed import missed_recent
from ingest.models import Source
from profiles.services.tokens import access_token_create
from tests.conftest import basic_auth
from tests.outage import StalledServer, closed_port

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def database_down() -> Callable[[], AbstractContextManager[None]]:
    """`with database_down():` the app's connection points at a port where nothing listens
    (committed rows stay; the connection comes back after the block)."""

    @contextmanager
    def down() -> Iterator[None]:
        conn = connections["default"]
        saved = dict(conn.settings_dict)
        conn.close()
        conn.settings_dict.update(HOST="127.0.0.1", PORT=str(closed_port()))
        try:
            yield
        finally:
            conn.close()
            conn.settings_dict.clear()
            conn.settings_dict.update(saved)

    return down


@pytest.fixture
def mailjet(db: None) -> Source:
    return Source.objects.create(name="Mailjet", kind="mailjet")


def assert_retry_later(response: Any) -> None:
    assert response.status_code == 503, response.content
    assert response["Retry-After"] == "5"


@pytest.mark.parametrize(
    "path",
    ["/v1/track", "/v1/batch", "/v1/t"],
)
def test_the_tracking_api_answers_json_503(client, source, database_down, path):
    body = {"userId": "u1", "event": "Signed Up"}
    if path == "/v1/batch":
        body = {"batch": [{**body, "type": "track"}]}
    with database_down():
        response = client.post(path, orjson.dumps(body), content_type="application/json",
                               headers={"Authorization": basic_auth(source.write_key)})  # fmt: skip
    assert_retry_later(response)
    assert response["Content-Type"] == "application/json"
    assert response.json()["code"] == "service_unavailable"
    assert "nothing was stored" in response.json()["message"]


def test_a_webhook_answers_json_503_so_the_provider_retries(client, mailjet, database_down):
    event = {"event": "open", "time": 1700000000, "MessageID": 1, "email": "a@example.com"}
    with database_down():
        auth = {"Authorization": basic_auth(f"cdp:{mailjet.webhook_secret}", colon=False)}
        response = client.post(f"/v1/webhooks/mailjet/{mailjet.pk}", orjson.dumps([event]),
                               content_type="application/json", headers=auth)  # fmt: skip
    assert_retry_later(response)
    assert set(response.json()) == {"code", "message"} and response.json()["code"] == "service_unavailable"


def test_the_pixel_still_answers_its_gif_and_counts_the_miss(client, source, database_down):
    cache.clear()
    data = base64.b64encode(orjson.dumps({"userId": "u1", "event": "Email Opened", "writeKey": source.write_key}))
    with database_down():
        responses = [client.get(f"/v1/pixel/track?data={data.decode()}") for _ in range(3)]
    for response in responses:
        assert response.status_code == 200 and response["Content-Type"] == "image/gif"
        assert response.content.startswith(b"GIF89a")
    assert missed_recent(endpoint="pixel") == 3


@pytest.mark.skipif(not os.environ.get("REDIS_URL"), reason="needs Redis for the cache (set REDIS_URL)")
def test_the_pixel_answers_at_once_even_when_the_cache_stalls_too(client, source, database_down, caplog):
    """The database away and the cache (Redis) accepting connections but never answering:
    the miss cannot be counted, and the GIF still comes within the cache's 50 ms timeout."""
    from django.conf import settings
    from django.test import override_settings

    with StalledServer() as stalled:
        caches = {"default": {**settings.CACHES["default"], "LOCATION": f"redis://127.0.0.1:{stalled.port}/0"}}
        with override_settings(CACHES=caches), database_down():
            start = time.perf_counter()
            response = client.get(f"/v1/pixel/track?writeKey={source.write_key}&userId=u1&event=Email%20Opened")
            took = time.perf_counter() - start
        assert stalled.accepted >= 1
    assert response.status_code == 200 and response.content.startswith(b"GIF89a")
    assert took < 0.5, took
    assert "the cache is unavailable too" in caplog.text


def test_the_ingest_debugger_shows_the_missed_pixel_calls_once_the_database_is_back(
    client, source, database_down, admin_client
):
    cache.clear()
    with database_down():
        client.get(f"/v1/pixel/track?writeKey={source.write_key}&userId=u1&event=Email%20Opened")
    page = admin_client.get("/admin/ingest/source/debugger/")
    assert page.status_code == 200
    assert "1 pixel call was answered without being stored" in page.content.decode()


def test_a_tracked_link_answers_a_plain_503_page_and_no_redirect(client, source, database_down):
    with database_down():
        response = client.get(f"/v1/click?writeKey={source.write_key}&url=https://shop.example/sale&sig=x")
    assert_retry_later(response)
    assert "Location" not in response
    assert response["Content-Type"].startswith("text/plain")
    assert "cannot be followed right now" in response.content.decode()


@pytest.mark.parametrize(
    "path",
    ["/v1/spaces/default/collections/users/profiles/user_id:u1/traits", "/api/v1/profiles?q=ada",
     "/api/v1/profiles/user_id:u1/events"],
)  # fmt: skip
def test_the_read_apis_answer_their_error_shape_with_503(client, database_down, path):
    token = access_token_create(name="outage")[1]
    with database_down():
        response = client.get(path, headers={"Authorization": basic_auth(token)})
    assert_retry_later(response)
    assert response.json() == {
        "error": {"code": "service_unavailable", "message": "The database is unavailable. Retry after 5 seconds."}
    }


def test_healthz_is_liveness_and_readyz_names_what_is_down(client, database_down):
    with database_down():
        live = client.get("/healthz")
        ready = client.get("/readyz")
    assert live.status_code == 200
    assert_retry_later(ready)
    body = ready.json()
    assert body["status"] == "unavailable"
    assert body["checks"]["postgresql"].startswith("down")
    assert body["checks"]["broker"] == "ok"


def test_every_endpoint_answers_normally_once_the_database_is_back(client, source, database_down):
    with database_down():
        assert client.post("/v1/track", orjson.dumps({"userId": "u1", "event": "x"}), content_type="application/json",
                           headers={"Authorization": basic_auth(source.write_key)}).status_code == 503  # fmt: skip
    response = client.post("/v1/track", orjson.dumps({"userId": "u1", "event": "x"}), content_type="application/json",
                           headers={"Authorization": basic_auth(source.write_key)})  # fmt: skip
    assert (response.status_code, response.json()) == (200, {"success": True})
    assert client.get("/readyz").status_code == 200


def test_an_admin_page_answers_a_plain_503_not_a_500(admin_client, database_down):
    admin_client.get("/admin/")  # logged in while the database was there
    with database_down():
        response = admin_client.get("/admin/profiles/profile/")
    assert_retry_later(response)
    assert response["Content-Type"].startswith("text/plain")
    assert "database is unavailable" in response.content.decode()
