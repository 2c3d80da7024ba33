"""SQL traits sit at floor 5, above ingest (docs/architecture.md): they import ingest and the
floors below, and nothing below imports them."""

from __future__ import annotations

import ast
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command

ROOT = Path(__file__).resolve().parent.parent.parent
BELOW = ("audit", "destinations", "profiles", "audiences", "ingest")


def imported(app: str) -> set[str]:
    names: set[str] = set()
    for path in (ROOT / app).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                names.add(node.module.split(".")[0])
    return names


def test_no_floor_below_imports_sql_traits():
    for app in BELOW:
        assert "sqltraits" not in imported(app), app


def test_sql_traits_import_no_floor_above():
    assert "cdp" not in imported("sqltraits")


@pytest.mark.django_db
def test_the_models_match_their_migrations():
    call_command("makemigrations", "sqltraits", "ingest", "--check", "--dry-run", stdout=StringIO())
