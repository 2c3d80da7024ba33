"""The hot reads' connection check (`profiles.db.pg_cursor`): a kept connection the server
dropped between requests is replaced before a query uses it, as Django's health check does."""

from __future__ import annotations

import time

import psycopg
import pytest
from django.db import connection

from profiles.db import pg_cursor

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def _backend_pid() -> int:
    with pg_cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return int(cursor.fetchone()[0])


def test_a_connection_the_server_dropped_is_replaced_before_a_query_uses_it(settings):
    settings.DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
    connection.health_check_enabled = True
    first = _backend_pid()
    with psycopg.connect(**connection.get_connection_params(), autocommit=True) as other:
        other.execute("SELECT pg_terminate_backend(%s)", [first])
        while other.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", [first]).fetchone():
            time.sleep(0.01)
    connection.health_check_done = False  # a new request (request_started resets it)
    assert _backend_pid() != first  # no error: a new connection answered


def test_a_live_connection_is_kept():
    connection.health_check_enabled = True
    first = _backend_pid()
    connection.health_check_done = False
    assert _backend_pid() == first
