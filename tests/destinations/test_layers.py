"""Destinations sit at floor 1 (docs/architecture.md): they receive Segment-format messages
and know nothing of profiles or audiences. They import only audit (floor 0) of the project."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import call_command

from tests.sqltraits.test_layers import imported

ABOVE = ("profiles", "audiences", "ingest", "sqltraits", "cdp")


def test_destinations_import_no_floor_above():
    assert not set(ABOVE) & imported("destinations")


def test_audit_does_not_import_destinations():
    assert "destinations" not in imported("audit")


@pytest.mark.django_db
def test_the_models_match_their_migrations():
    call_command("makemigrations", "destinations", "--check", "--dry-run", stdout=StringIO())
