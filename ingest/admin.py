"""Admin for sources, and the ingest debugger: what each source sent, what was stored,
what was refused and why."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib import admin
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html

from ingest import selectors
from ingest.models import RejectedMessage, Source


@admin.register(Source)
class SourceAdmin(admin.ModelAdmin[Source]):
    list_display = ("name", "kind", "enabled", "write_key", "created_at", "debugger_link")
    list_filter = ("kind", "enabled")
    search_fields = ("name", "write_key")
    readonly_fields = ("write_key", "created_at", "tracking_help")
    fields = ("name", "kind", "enabled", "write_key", "allowed_redirect_domains", "tracking_help", "created_at")

    @admin.display(description="Debugger")
    def debugger_link(self, obj: Source) -> str:
        return format_html('<a href="{}">recent messages</a>', reverse("admin:ingest_source_debugger", args=[obj.pk]))

    @admin.display(description="How to send")
    def tracking_help(self, obj: Source) -> str:
        if not obj.pk:
            return "Save the source to get its write key."
        return format_html(
            "Point any Segment SDK at <code>{}</code> with write key <code>{}</code>.",
            settings.CDP_PUBLIC_URL,
            obj.write_key,
        )

    def get_urls(self) -> list[URLPattern]:
        own = [
            path("debugger/", self.admin_site.admin_view(self.overview_view), name="ingest_debugger"),
            path("<int:pk>/debugger/", self.admin_site.admin_view(self.source_view), name="ingest_source_debugger"),
            path("unknown/debugger/", self.admin_site.admin_view(self.unknown_view), name="ingest_unknown_debugger"),
        ]
        return own + super().get_urls()

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
        extra_context = {**(extra_context or {}), "debugger_url": reverse("admin:ingest_debugger")}
        return super().changelist_view(request, extra_context)

    def overview_view(self, request: HttpRequest) -> HttpResponse:
        context = {
            **self.admin_site.each_context(request),
            "title": "Ingest debugger",
            "rows": selectors.debugger_overview(),
            "opts": self.model._meta,
        }
        return TemplateResponse(request, "admin/ingest/debugger_overview.html", context)

    def source_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        source = get_object_or_404(Source, pk=pk)
        return self._recent(request, source, f"Ingest debugger: {source.name}")

    def unknown_view(self, request: HttpRequest) -> HttpResponse:
        return self._recent(request, None, "Ingest debugger: requests with no valid write key")

    def _recent(self, request: HttpRequest, source: Source | None, title: str) -> HttpResponse:
        accepted, rejected = selectors.debugger_recent(source_id=source.pk if source else None)
        context = {
            **self.admin_site.each_context(request),
            "title": title,
            "source": source,
            "accepted": accepted,
            "rejected": rejected,
            "opts": self.model._meta,
        }
        return TemplateResponse(request, "admin/ingest/debugger_source.html", context)


@admin.register(RejectedMessage)
class RejectedMessageAdmin(admin.ModelAdmin[RejectedMessage]):
    list_display = ("received_at", "source", "endpoint", "index", "code", "reason")
    list_filter = ("code", "source", "endpoint")
    search_fields = ("reason", "payload")
    date_hierarchy = "received_at"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: RejectedMessage | None = None) -> bool:
        return False
