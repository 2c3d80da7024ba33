"""Schemathesis against our own OpenAPI schema, in process (WSGI): every operation, with
generated valid and invalid input, must answer only documented codes, in documented shapes,
never a 500. Bounded: a few examples per operation (about 10 s in all)."""

from __future__ import annotations

from contextlib import contextmanager

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from django.test import override_settings
from hypothesis import HealthCheck, settings

from cdp.wsgi import application

pytestmark = pytest.mark.django_db


# Loaded at collection: generating the schema touches no database.
# A cursor is opaque and an identifier must be `type:value`: a string the schema allows can
# still be refused with the documented 400, so "valid input" may answer 400 as well as 404.
CONFIG = schemathesis.config.SchemathesisConfig.from_str(
    """
[checks.positive_data_acceptance]
expected-statuses = ["2xx", "400", "401", "403", "404"]
"""
)
schema = schemathesis.openapi.from_wsgi("/api/v1/schema?format=json", application, config=CONFIG)


@contextmanager
def keep_the_test_connection():
    """The WSGI handler closes the database connection after each request, which would end the
    test's transaction; Django's test client disconnects the same signals for the same reason
    (and connects them again after each of its requests, so this wraps the calls, not the test)."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        yield
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)


@pytest.fixture
def people(send):
    send(
        {
            "type": "identify",
            "userId": "u1",
            "anonymousId": "a1",
            "traits": {"email": "ada@example.com", "name": "Ada"},
        },
        {"type": "track", "userId": "u1", "event": "Signed Up", "properties": {"plan": "pro"}},
        {"type": "group", "userId": "u1", "groupId": "acme"},
    )


@pytest.fixture
def sql_trait(db):
    """The SQL trait the schema's example key names, so its operations meet a real one too."""
    from sqltraits.services import sql_trait_create

    return sql_trait_create(data={"key": "has_open_ticket", "query": "SELECT 'u1' AS user_id, true AS has_open_ticket"})


def test_every_sql_trait_operation_is_in_the_schema():
    operations = {(path, method) for path, item in schema.raw_schema["paths"].items() for method in item}
    assert {
        ("/api/v1/sql-traits", "get"), ("/api/v1/sql-traits", "post"), ("/api/v1/sql-traits/{key}", "get"),
        ("/api/v1/sql-traits/{key}", "patch"), ("/api/v1/sql-traits/{key}", "delete"),
        ("/api/v1/sql-traits/{key}/run", "post"), ("/api/v1/sql-traits/{key}/runs", "get"),
    } <= operations  # fmt: skip


@pytest.fixture
def destination(db):
    """Destination 1 (the schema's example id), aimed at nothing that answers: it is never drained here."""
    from django.utils import timezone

    from destinations.models import Delivery, Destination

    dest = Destination.objects.create(pk=1, name="Hook", kind="webhook", audiences="all",
                                      settings={"urls": ["http://127.0.0.1:9/hook"], "shared_secret": "s"},
                                      paused_until=timezone.now() + timezone.timedelta(days=1))  # fmt: skip
    now = timezone.now()
    Delivery.objects.create(destination=dest, person="p", kind="audience", subject="vip", message_id="m1",
                            message={"type": "identify"}, status="dead", expires_at=now, finished_at=now)  # fmt: skip
    return dest


def test_every_destination_operation_is_in_the_schema():
    operations = {(path, method) for path, item in schema.raw_schema["paths"].items() for method in item}
    assert {
        ("/api/v1/destinations", "get"), ("/api/v1/destinations", "post"), ("/api/v1/destinations/{id}", "get"),
        ("/api/v1/destinations/{id}", "patch"), ("/api/v1/destinations/{id}", "delete"),
        ("/api/v1/destinations/{id}/deliveries", "get"), ("/api/v1/destinations/{id}/replay", "post"),
    } <= operations  # fmt: skip


@schema.parametrize()
@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.filter_too_much],
)
def test_api_conforms_to_its_schema(case, write_token, people, sql_trait, destination):
    with override_settings(CDP_API_RATE_LIMIT=100_000), keep_the_test_connection():
        case.call_and_validate(headers={"Authorization": f"Bearer {write_token}"})
