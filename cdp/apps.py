from django.apps import AppConfig
from django.contrib.admin import apps as admin_apps


class CdpConfig(AppConfig):
    """The top floor: settings, URLs, the Celery app, and the admin home (its templates)."""

    default = True
    name = "cdp"
    verbose_name = "CDP"


class CdpAdminConfig(admin_apps.AdminConfig):
    """Django's admin, with the CDP's site: the overview as its home, the product's name."""

    default = False
    default_site = "cdp.admin_site.CdpAdminSite"
