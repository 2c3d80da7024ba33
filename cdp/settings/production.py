"""Production settings: the base settings, refusing to start on embedded defaults.

A real deployment needs its own secret, a PostgreSQL database and a real broker; without
them Django fails at startup with ImproperlyConfigured naming what is missing. It also
refuses `ALLOWED_HOSTS=*` (any Host header, so any forged link in a password-reset mail or
a cache keyed by host) unless `CDP_ALLOW_ANY_HOST=true` says it is meant. It sends HSTS
and secure cookies; `X-Forwarded-Proto` is trusted only with `CDP_BEHIND_PROXY=true`
(base settings).
"""

import os

from django.core.exceptions import ImproperlyConfigured

from .base import *  # noqa: F403
from .base import ALLOWED_HOSTS, DATABASES, env_bool

_missing = []
if len(os.environ.get("SECRET_KEY", "")) < 32:
    _missing.append("SECRET_KEY (at least 32 characters)")
if not os.environ.get("DATABASE_URL") or DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    _missing.append("DATABASE_URL (a PostgreSQL URL)")
if not os.environ.get("CELERY_BROKER_URL") or os.environ["CELERY_BROKER_URL"].startswith("filesystem"):
    _missing.append("CELERY_BROKER_URL (e.g. redis://redis:6379/0)")
if _missing:
    raise ImproperlyConfigured("cdp.settings.production refuses to start without: " + ", ".join(_missing))
if "*" in ALLOWED_HOSTS and not env_bool("CDP_ALLOW_ANY_HOST"):
    raise ImproperlyConfigured(
        "cdp.settings.production refuses ALLOWED_HOSTS=*: name the hosts this server answers for "
        "(or set CDP_ALLOW_ANY_HOST=true if a proxy in front already checks the Host header)."
    )

DEBUG = False
SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", True)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
# Browsers keep to HTTPS for a year once they have seen this over HTTPS (it is never sent
# over plain HTTP, so a localhost install is unaffected). Subdomains only when asked.
SECURE_HSTS_SECONDS = int(os.environ.get("SECURE_HSTS_SECONDS", str(365 * 24 * 3600)))
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS")
