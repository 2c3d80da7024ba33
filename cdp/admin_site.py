"""The admin site: its home is the CDP overview (`cdp.overview`), the app list one click away
(`apps/`, and the navigation sidebar on every other page), and the header names the product."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest
from django.template.response import TemplateResponse
from django.urls import URLPattern, URLResolver, path

from cdp.overview import admin_url, overview


class CdpAdminSite(admin.AdminSite):
    site_header = "CDP"
    site_title = "CDP"
    index_title = "Overview"

    def get_urls(self) -> list[URLResolver | URLPattern]:
        return [path("apps/", self.admin_view(self.apps_view), name="apps"), *super().get_urls()]

    def index(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> TemplateResponse:
        """The overview, for any staff member: each part links to the pages they may open."""
        user = request.user
        context = {
            **self.each_context(request),
            "title": self.index_title,
            "subtitle": None,
            "o": overview(),
            "links": {
                "audiences": user.has_perm("audiences.view_audience") or user.has_perm("audiences.change_audience"),
                "sources": user.has_perm("ingest.view_source") or user.has_perm("ingest.change_source"),
                "profiles": user.has_perm("profiles.view_profile") or user.has_perm("profiles.change_profile"),
                "traits": admin_url("admin:profiles_computedtrait_changelist"),
            },
            **(extra_context or {}),
        }
        request.current_app = self.name
        return TemplateResponse(request, "admin/cdp/overview.html", context)

    def apps_view(self, request: HttpRequest) -> TemplateResponse:
        """Django's own home: every app and model this user may see."""
        context = {
            **self.each_context(request),
            "title": "Apps and models",
            "subtitle": None,
            "app_list": self.get_app_list(request),
        }
        request.current_app = self.name
        return TemplateResponse(request, self.index_template or "admin/index.html", context)
