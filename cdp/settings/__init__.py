"""Settings, read from the environment. With nothing set, the embedded default runs:
SQLite (WAL) and a filesystem Celery broker under `var/`. `cdp.settings.production`
adds the checks a real deployment needs."""

from .base import *  # noqa: F403
