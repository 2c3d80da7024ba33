"""The Celery app, `cdp`: `celery -A cdp worker -B` runs a worker with beat.

Configuration comes from Django settings (the `CELERY_` names), so the embedded default
(a filesystem broker under `var/`) and production (Redis) run the same tasks.
"""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cdp.settings")

app = Celery("cdp")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
