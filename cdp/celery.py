"""The Celery app, `cdp`: `celery -A cdp worker -B` runs a worker with beat.

Configuration comes from Django settings (the `CELERY_` names), so the embedded default
(a filesystem broker under `var/`) and production (Redis) run the same tasks.
"""

import os
from typing import Any

from celery import Celery
from celery.signals import task_prerun

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cdp.settings")

app = Celery("cdp")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@task_prerun.connect
def _database_connection_checked(task: Any = None, **_: Any) -> None:
    """Before each task on a worker, what Django does before each request: drop a connection
    that is broken or past CONN_MAX_AGE, and health-check the kept one on first use. (With
    CELERY_DB_REUSE_MAX set, Celery's fixup no longer reconnects for every task.)"""
    if task is not None and not getattr(task.request, "is_eager", False):
        from django.db import close_old_connections

        close_old_connections()
