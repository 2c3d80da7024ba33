"""Base settings. Every value a deployment changes is read from the environment.

| variable            | default (the embedded default)                          |
|---------------------|---------------------------------------------------------|
| DATABASE_URL        | SQLite in WAL mode at `$CDP_VAR_DIR/cdp.sqlite3`        |
| CELERY_BROKER_URL   | kombu's filesystem broker under `$CDP_VAR_DIR/broker`   |
| REDIS_URL           | none: the cache is in-process                           |
| SECRET_KEY          | generated once and kept in `$CDP_VAR_DIR/secret_key`    |
| ALLOWED_HOSTS       | localhost, 127.0.0.1, [::1]                             |
| DEBUG               | false                                                   |
| CDP_CELERY_EAGER    | false: tasks run inline where no worker can run         |
| CDP_VAR_DIR         | `var/` beside manage.py                                 |
| CDP_BEHIND_PROXY    | false: trust X-Forwarded-Proto only when true           |
| SQL_TRAITS_DATABASE_URL | the CDP's own database: what SQL traits read        |

Timeouts (what happens in each outage: README, "Operations"): PostgreSQL connections get
`CDP_DB_CONNECT_TIMEOUT` (3 s) and, unless `CDP_DB_ROLE=command` (manage.py's default),
the edge's statement and lock timeouts; resolution and the full rebuild set their own per
transaction. The broker, the cache and the rate limiter get short socket timeouts.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Any

import dj_database_url
import django_stubs_ext

from cdp.beat import SCHEDULE
from cdp.settings.timeouts import BROKER_TRANSPORT_OPTIONS, CACHE_OPTIONS, database_timeouts

# Lets `admin.ModelAdmin[Source]` and friends be subscripted at run time, for mypy.
django_stubs_ext.monkeypatch()

BASE_DIR = Path(__file__).resolve().parent.parent.parent
VAR_DIR = Path(os.environ.get("CDP_VAR_DIR") or BASE_DIR / "var")
VAR_DIR.mkdir(parents=True, exist_ok=True)


def env_bool(name: str, default: bool = False) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_float(name: str, default: float) -> float:
    value = os.environ.get(name)
    return float(value) if value else default


def env_list(name: str, default: list[str]) -> list[str]:
    value = os.environ.get(name)
    if not value:
        return default
    return [item.strip() for item in value.split(",") if item.strip()]


def _embedded_secret_key() -> str:
    """A per-install secret for the embedded default, kept so sessions survive restarts."""
    path = VAR_DIR / "secret_key"
    if not path.exists():
        path.write_text(secrets.token_urlsafe(50))
        path.chmod(0o600)
    return path.read_text().strip()


DEBUG = env_bool("DEBUG")
SECRET_KEY = os.environ.get("SECRET_KEY") or _embedded_secret_key()
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])
# Only a proxy in front (which sets the header and strips a client's own) may say that a
# request came over HTTPS: trusted blindly, any client could claim it.
CDP_BEHIND_PROXY = env_bool("CDP_BEHIND_PROXY")
if CDP_BEHIND_PROXY:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")


INSTALLED_APPS = [
    "cdp.apps.CdpAdminConfig",  # django.contrib.admin, with the CDP's site (cdp/admin_site.py)
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "corsheaders",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    # Floors, bottom up (docs/architecture.md): each imports only the ones before it.
    "audit",
    "destinations",
    "profiles",
    "audiences",
    "ingest",
    "sqltraits",  # floor 5: sends through ingest's messages_ingest
    "cdp",  # the admin site and its home (cdp/admin_site.py)
]

MIDDLEWARE = [
    # First: /v1/ (the tracking edge, the Profile API) goes through MACHINE_MIDDLEWARE instead.
    "cdp.middleware.ShortChainMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "corsheaders.middleware.CorsMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last, so it sees a view's exception first: a plain 503 when the database is away.
    "cdp.middleware.DatabaseUnavailableMiddleware",
]
# What machine traffic under /v1/ needs of MIDDLEWARE (cdp/middleware.py): no sessions, CSRF,
# users, messages or static files.
MACHINE_MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "corsheaders.middleware.CorsMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "cdp.middleware.DatabaseUnavailableMiddleware",
]

ROOT_URLCONF = "cdp.urls"
WSGI_APPLICATION = "cdp.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Database -----------------------------------------------------------------------------
SQLITE_PATH = VAR_DIR / "cdp.sqlite3"
DATABASES: dict[str, dict[str, Any]] = {
    "default": dict(
        dj_database_url.parse(
            os.environ.get("DATABASE_URL") or f"sqlite:///{SQLITE_PATH}",
            conn_max_age=int(os.environ.get("CONN_MAX_AGE", "60")),
            conn_health_checks=True,
        )
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL lets the web server read while the worker writes; IMMEDIATE transactions take the
    # write lock up front, so two writers queue on busy_timeout instead of failing with
    # "database is locked" when a read transaction tries to upgrade.
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    DATABASES["default"]["OPTIONS"] = {
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        "transaction_mode": "IMMEDIATE",
        "timeout": 30,
    }
    # A file, not memory, so a live server and a Celery worker thread see the test data.
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / "test.sqlite3")}
else:
    DATABASES["default"]["OPTIONS"] = database_timeouts(os.environ, DATABASES["default"].get("OPTIONS") or {})

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Cache --------------------------------------------------------------------------------
REDIS_URL = os.environ.get("REDIS_URL", "")
# Every Redis client of the app but the broker's (the cache, the API's rate limiter).
CDP_REDIS_TIMEOUT = CACHE_OPTIONS["socket_timeout"]
CACHES: dict[str, dict[str, Any]] = {
    "default": (
        {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL, "OPTIONS": CACHE_OPTIONS}
        if REDIS_URL
        else {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}
    )
}

# --- Celery -------------------------------------------------------------------------------
BROKER_DIR = VAR_DIR / "broker"
CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL") or "filesystem://"
if CELERY_BROKER_URL.startswith("filesystem://"):
    for sub in ("queue", "processed", "control"):
        (BROKER_DIR / sub).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(BROKER_DIR / "queue"),
        "data_folder_out": str(BROKER_DIR / "queue"),
        "processed_folder": str(BROKER_DIR / "processed"),
        "control_folder": str(BROKER_DIR / "control"),
        "store_processed": False,
    }
else:
    CELERY_BROKER_TRANSPORT_OPTIONS = dict(BROKER_TRANSPORT_OPTIONS)
# The edge's publish of a batch to the pipeline, after the commit (ingest/handoff.py): a
# broker that stalls or refuses costs a request at most this, then the batch is owed.
CDP_BROKER_PUBLISH_TIMEOUT = env_float("CDP_BROKER_PUBLISH_TIMEOUT", 0.05)
CELERY_TASK_ALWAYS_EAGER = env_bool("CDP_CELERY_EAGER")
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_WORKER_PREFETCH_MULTIPLIER = 4
# Celery's Django fixup closes the database connection around every task unless this is set
# (it then closes it every 2 x N tasks): a new PostgreSQL connection per task cost more than
# resolving its 100 events. Tasks call close_old_connections() first instead, as a request does
# (CONN_MAX_AGE and the health check apply).
CELERY_DB_REUSE_MAX = 500
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# A worker waits out a broker outage of any length and reconnects by itself (Celery's
# default gives up after 100 attempts, about 50 minutes, and the worker exits).
CELERY_BROKER_CONNECTION_RETRY = True
CELERY_BROKER_CONNECTION_MAX_RETRIES = None
# Every task is idempotent (tests run each twice): acknowledged once done, so a task in
# flight on a worker that dies is delivered again; a lost child process requeues it at once.
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
# Tasks keep running when the broker connection drops: their database work is whole, and
# an acknowledgement lost with the connection only means a harmless redelivery.
CELERY_WORKER_CANCEL_LONG_RUNNING_TASKS_ON_CONNECTION_LOSS = False
# A ceiling for any task that sets none (each of ours sets its own, ingest/tasks.py). Only
# the prefork pool enforces it; `--pool solo` (dev.py start) cannot interrupt a task.
CELERY_TASK_SOFT_TIME_LIMIT = 300
CELERY_TASK_TIME_LIMIT = 360
CELERY_BEAT_SCHEDULE = SCHEDULE
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")
CELERY_TIMEZONE = "UTC"

# A batch the pipeline failed to resolve this many times (a corrupt row, a bug one of its
# messages trips) is parked: the sweep stops retrying it, and the ingest debugger shows it
# with its error and a retry button. The sweep retries a failed batch every minute or so.
CDP_BATCH_MAX_ATTEMPTS = int(os.environ.get("CDP_BATCH_MAX_ATTEMPTS", "5"))

# Changes of computed trait values are kept this long (what destinations deliver, and the
# profile page's history), then pruned daily.
CDP_TRAIT_CHANGES_KEEP_DAYS = int(os.environ.get("CDP_TRAIT_CHANGES_KEEP_DAYS", "30"))

# --- Destinations (destinations/) --------------------------------------------------------
# A delivery that keeps failing with 429, 5xx or network errors is retried this long (Segment:
# 4 hours), then dead: shown with its request and response, and replayable.
CDP_DESTINATION_RETRY_HOURS = env_float("CDP_DESTINATION_RETRY_HOURS", 4.0)
# Finished deliveries are kept this long, then pruned daily (their counts per day stay).
CDP_DESTINATION_KEEP_DAYS = int(os.environ.get("CDP_DESTINATION_KEEP_DAYS", "30"))

# --- SQL traits (sqltraits/warehouse.py) ---------------------------------------------------
# The database SQL traits' queries read: a postgres:// or sqlite:/// URL; empty, the CDP's own.
# Give it a role that may only read: the query also runs in a read-only transaction.
SQL_TRAITS_DATABASE_URL = os.environ.get("SQL_TRAITS_DATABASE_URL", "")
# Seconds a query may run, fetching included; past it the run fails with a timeout.
SQL_TRAITS_STATEMENT_TIMEOUT = env_float("SQL_TRAITS_STATEMENT_TIMEOUT", 60.0)
# Rows a query may return (Segment: 25M). The result is held in memory while it is compared.
SQL_TRAITS_MAX_ROWS = int(os.environ.get("SQL_TRAITS_MAX_ROWS") or "1000000")

# --- Tracking API edge --------------------------------------------------------------------
# Browsers post analytics.js events from any origin; only the /v1/ edge allows it. The
# Profile API under /v1/spaces/ is server-side only, as Segment's is: no CORS.
CORS_URLS_REGEX = r"^/v1/(?!spaces/)"
CORS_ALLOW_ALL_ORIGINS = True
CORS_ALLOW_HEADERS = ("accept", "authorization", "content-type", "content-encoding", "user-agent")
CORS_PREFLIGHT_MAX_AGE = 86400
# Copies of refused requests the ingest debugger keeps per minute (ingest/refusals.py): per
# source, and for requests with no valid write key per client address and in all. Past them a
# refusal is counted, not stored, so with the 10-minute trim a source holds at most
# 1,000 + 10 x 60 rows of 2 KB, whatever an attacker sends with a public write key.
CDP_REJECTED_PER_MINUTE_PER_SOURCE = int(os.environ.get("CDP_REJECTED_PER_MINUTE_PER_SOURCE", "60"))
CDP_REJECTED_PER_MINUTE_PER_ADDRESS = int(os.environ.get("CDP_REJECTED_PER_MINUTE_PER_ADDRESS", "10"))
CDP_REJECTED_PER_MINUTE_UNKNOWN = int(os.environ.get("CDP_REJECTED_PER_MINUTE_UNKNOWN", "120"))
# The tracking views read bodies themselves and enforce Segment's 500 KB per request; this
# is only Django's outer guard for everything else.
DATA_UPLOAD_MAX_MEMORY_SIZE = 5 * 1024 * 1024

# --- Read APIs (Profile API, /api/v1/) -----------------------------------------------------
CDP_SPACE_ID = os.environ.get("CDP_SPACE_ID", "") or "default"
# Requests per second per access token; over it, 429 rate_limit_error (profiles/api/auth.py).
CDP_API_RATE_LIMIT = int(os.environ.get("CDP_API_RATE_LIMIT", "500"))
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["profiles.api.auth.AccessTokenAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["profiles.api.auth.HasAccessToken"],
    "DEFAULT_RENDERER_CLASSES": ["profiles.api.render.OrjsonRenderer"],  # DRF's JSON, by orjson
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "profiles.api.base.api_exception_handler",
    "UNAUTHENTICATED_USER": None,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "CDP API",
    "DESCRIPTION": "Segment's Profile API (compatible, under /v1/spaces/) and the CDP's REST API (/api/v1/). "
    "Authenticate with an access token: HTTP Basic with the token as username, or `Authorization: Bearer`.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],
    "SERVE_AUTHENTICATION": [],
    # The docs pages load Swagger UI and Redoc from this server (drf-spectacular-sidecar), no CDN.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
}

# --- Static files, i18n -------------------------------------------------------------------
STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
STATIC_ROOT.mkdir(exist_ok=True)
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    # runserver's request log (dev.py start on Windows) without secret query values;
    # gunicorn's access log is redacted by gunicorn.conf.py.
    "filters": {"redact_request_line": {"()": "cdp.logredact.RedactRequestLine"}},
    "formatters": {
        "django.server": {"()": "django.utils.log.ServerFormatter", "format": "[{server_time}] {message}", "style": "{"}
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler"},
        "django.server": {
            "class": "logging.StreamHandler",
            "formatter": "django.server",
            "filters": ["redact_request_line"],
        },
    },
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        "django.server": {"handlers": ["django.server"], "level": "INFO", "propagate": False},
    },
}
CDP_PUBLIC_URL = os.environ.get("CDP_PUBLIC_URL", "http://localhost:8000").rstrip("/")
