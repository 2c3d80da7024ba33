"""Production settings: the base settings, refusing to start on embedded defaults.

A real deployment needs its own secret, a PostgreSQL database and a real broker; without
them Django fails at startup with ImproperlyConfigured naming what is missing.
"""

import os

from django.core.exceptions import ImproperlyConfigured

from .base import *  # noqa: F403
from .base import DATABASES

_missing = []
if len(os.environ.get("SECRET_KEY", "")) < 32:
    _missing.append("SECRET_KEY (at least 32 characters)")
if not os.environ.get("DATABASE_URL") or DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    _missing.append("DATABASE_URL (a PostgreSQL URL)")
if not os.environ.get("CELERY_BROKER_URL") or os.environ["CELERY_BROKER_URL"].startswith("filesystem"):
    _missing.append("CELERY_BROKER_URL (e.g. redis://redis:6379/0)")
if _missing:
    raise ImproperlyConfigured("cdp.settings.production refuses to start without: " + ", ".join(_missing))

DEBUG = False
SESSION_COOKIE_SECURE = os.environ.get("SESSION_COOKIE_SECURE", "true").lower() == "true"
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
