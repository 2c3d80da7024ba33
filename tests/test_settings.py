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


PRODUCTION = {"SECRET_KEY": "x" * 50, "DATABASE_URL": "postgres://p@db/cdp", "CELERY_BROKER_URL": "redis://r:6379/0"}
SECURITY = (
    "import django; django.setup(); from django.conf import settings as s; "
    "print(getattr(s, 'SECURE_PROXY_SSL_HEADER', None), s.SECURE_HSTS_SECONDS, s.SESSION_COOKIE_SECURE, "
    "s.CSRF_COOKIE_SECURE)"
)


def run_code(code: str, env: dict[str, str], module: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    clean = {
        k: v
        for k, v in os.environ.items()
        if k not in {"DATABASE_URL", "CELERY_BROKER_URL", "REDIS_URL", "SECRET_KEY", "DJANGO_SETTINGS_MODULE"}
    }
    clean.update({"DJANGO_SETTINGS_MODULE": module, "CDP_VAR_DIR": str(tmp_path), **env})
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=clean, capture_output=True, text=True)


def test_production_sends_hsts_and_secure_cookies_and_trusts_no_proxy_header_by_default(tmp_path):
    result = run_code(SECURITY, PRODUCTION, "cdp.settings.production", tmp_path)
    assert result.returncode == 0, result.stderr
    proxy, hsts, session_secure, csrf_secure = result.stdout.split()
    assert proxy == "None", "X-Forwarded-Proto must not be trusted without a proxy in front"
    assert int(hsts) >= 365 * 24 * 3600
    assert (session_secure, csrf_secure) == ("True", "True")


def test_the_proxy_header_is_trusted_only_when_a_proxy_is_said_to_be_in_front(tmp_path):
    result = run_code(SECURITY, {**PRODUCTION, "CDP_BEHIND_PROXY": "true"}, "cdp.settings.production", tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("('HTTP_X_FORWARDED_PROTO', 'https')")


def test_production_refuses_any_host_unless_told_so(tmp_path):
    refused = run_django({**PRODUCTION, "ALLOWED_HOSTS": "cdp.example.com,*"}, "cdp.settings.production", tmp_path)
    assert refused.returncode != 0
    assert "ImproperlyConfigured" in refused.stderr and "ALLOWED_HOSTS=*" in refused.stderr
    allowed = run_django(
        {**PRODUCTION, "ALLOWED_HOSTS": "*", "CDP_ALLOW_ANY_HOST": "true"}, "cdp.settings.production", tmp_path
    )
    assert allowed.returncode == 0, allowed.stderr


TIMEOUTS = (
    "import django; django.setup(); from django.db import connection; c = connection.cursor(); "
    "c.execute('SHOW statement_timeout'); a = c.fetchone()[0]; c.execute('SHOW lock_timeout'); "
    "print(a, c.fetchone()[0], connection.get_connection_params()['connect_timeout'])"
)


@pytest.mark.postgres
def test_database_connections_have_the_edges_timeouts_and_commands_have_none(tmp_path):
    from django.conf import settings

    db = settings.DATABASES["default"]
    url = f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/postgres"
    edge = run_code(TIMEOUTS, {"DATABASE_URL": url}, "cdp.settings", tmp_path)
    assert edge.returncode == 0, edge.stderr
    assert edge.stdout.split() == ["10s", "3s", "3"]
    command = run_code(TIMEOUTS, {"DATABASE_URL": url, "CDP_DB_ROLE": "command"}, "cdp.settings", tmp_path)
    assert command.returncode == 0, command.stderr
    assert command.stdout.split() == ["0", "0", "3"]
    # manage.py runs commands (migrations among them) in the command role.
    code = TIMEOUTS.replace("import django; django.setup(); ", "")
    shell = subprocess.run(
        [sys.executable, "manage.py", "shell", "-v", "0", "-c", code],
        cwd=ROOT, env={**os.environ, "DATABASE_URL": url, "CDP_VAR_DIR": str(tmp_path)},
        capture_output=True, text=True,
    )  # fmt: skip
    assert shell.returncode == 0, shell.stderr
    assert shell.stdout.split() == ["0", "0", "3"]
