"""Settings: the embedded default needs nothing; production refuses to start without
a real secret, database and broker."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CHECK = (
    "import django; django.setup(); from django.conf import settings; print(settings.DATABASES['default']['ENGINE'])"
)


def run_django(env: dict[str, str], module: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    clean = {
        k: v
        for k, v in os.environ.items()
        if k not in {"DATABASE_URL", "CELERY_BROKER_URL", "REDIS_URL", "SECRET_KEY", "DJANGO_SETTINGS_MODULE"}
    }
    clean.update({"DJANGO_SETTINGS_MODULE": module, "CDP_VAR_DIR": str(tmp_path), **env})  # fmt: skip
    return subprocess.run([sys.executable, "-c", CHECK], cwd=ROOT, env=clean, capture_output=True, text=True)


def test_embedded_default_needs_no_environment(tmp_path):
    result = run_django({}, "cdp.settings", tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "django.db.backends.sqlite3"
    assert (tmp_path / "secret_key").exists()


def test_embedded_default_sqlite_uses_wal(tmp_path):
    env = {**os.environ, "CDP_VAR_DIR": str(tmp_path)}
    env.pop("DATABASE_URL", None)
    code = ("import django; django.setup(); from django.db import connection; c = connection.cursor(); "
            "c.execute('PRAGMA journal_mode'); print(c.fetchone()[0])")  # fmt: skip
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True)
    assert result.stdout.strip() == "wal", result.stderr


@pytest.mark.parametrize(
    ("env", "missing"),
    [
        ({}, "SECRET_KEY"),
        ({"SECRET_KEY": "x" * 50, "CELERY_BROKER_URL": "redis://r:6379/0"}, "DATABASE_URL"),
        ({"SECRET_KEY": "x" * 50, "DATABASE_URL": "postgres://p@db/cdp"}, "CELERY_BROKER_URL"),
        (
            {"SECRET_KEY": "short", "DATABASE_URL": "postgres://p@db/cdp", "CELERY_BROKER_URL": "redis://r/0"},
            "SECRET_KEY",
        ),
        (
            {"SECRET_KEY": "x" * 50, "DATABASE_URL": "sqlite:///x.db", "CELERY_BROKER_URL": "redis://r/0"},
            "DATABASE_URL",
        ),
    ],
)
def test_production_refuses_to_start_without_real_services(tmp_path, env, missing):
    result = run_django(env, "cdp.settings.production", tmp_path)
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr and missing in result.stderr


def test_production_starts_with_everything_set(tmp_path):
    env = {"SECRET_KEY": "x" * 50, "DATABASE_URL": "postgres://p@db/cdp", "CELERY_BROKER_URL": "redis://r:6379/0"}
    result = run_django(env, "cdp.settings.production", tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "django.db.backends.postgresql"
