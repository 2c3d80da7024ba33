"""`/healthz` (liveness) and `/readyz` (readiness: PostgreSQL and the broker, within a
deadline), against real services and real outages: a refused port, a socket that never
answers."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from django.db import connections

from cdp.celery import app as celery_app
from cdp.health import READY_DEADLINE_S
from tests.outage import StalledServer, closed_port

pytestmark = pytest.mark.django_db


@contextmanager
def broker_at(url: str) -> Iterator[None]:
    saved = celery_app.conf.broker_write_url
    celery_app.conf.broker_write_url = url
    try:
        yield
    finally:
        celery_app.conf.broker_write_url = saved


def test_ready_when_postgresql_and_the_broker_answer(client):
    response = client.get("/readyz")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["status"] == "ready" and body["checks"] == {"postgresql": "ok", "broker": "ok"}
    assert "owed" in body["handoff"]
    assert client.get("/healthz").content == b"ok\n"


def test_a_refused_broker_is_named_at_once(client):
    with broker_at(f"redis://127.0.0.1:{closed_port()}/0"):
        start = time.monotonic()
        response = client.get("/readyz")
        took = time.monotonic() - start
    assert response.status_code == 503 and response["Retry-After"] == "5"
    checks = response.json()["checks"]
    assert checks["postgresql"] == "ok" and checks["broker"].startswith("down")
    assert took < READY_DEADLINE_S
    assert client.get("/healthz").status_code == 200  # the process itself is alive


@pytest.mark.parametrize("service", ["broker", "postgresql"])
def test_a_stalled_service_costs_the_deadline_not_a_hung_request(client, service):
    with StalledServer() as stalled:
        if service == "broker":
            with broker_at(f"redis://127.0.0.1:{stalled.port}/0"):
                start = time.monotonic()
                response = client.get("/readyz")
        else:
            conn = connections["default"]
            saved = dict(conn.settings_dict)
            conn.settings_dict.update(HOST="127.0.0.1", PORT=str(stalled.port))
            try:
                start = time.monotonic()
                response = client.get("/readyz")
            finally:
                conn.settings_dict.clear()
                conn.settings_dict.update(saved)
        took = time.monotonic() - start
        assert stalled.accepted >= 1
    assert response.status_code == 503
    checks = response.json()["checks"]
    assert checks[service].startswith("down"), checks
    assert checks[{"broker": "postgresql", "postgresql": "broker"}[service]] == "ok"
    assert took < READY_DEADLINE_S + 1.0, took
