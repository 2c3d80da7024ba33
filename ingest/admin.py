"""Admin for sources, and the ingest debugger: what each source sent, what was stored,
what was refused and why."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html

from audit.admin import REASON, AuditedModelAdmin
from ingest import selectors
from ingest.models import RejectedMessage, Source
from ingest.refusals import UNKNOWN_SOURCE
from ingest.report_chart import timeline_svg
from ingest.services import batch_retry
from ingest.webhooks import webhook_url
from profiles import email_report


@admin.register(Source)
class SourceAdmin(AuditedModelAdmin[Source]):
    list_display = ("name", "kind", "enabled", "write_key", "created_at", "debugger_link")
    audit_secret_fields = ("signing_key",)
    list_filter = ("kind", "enabled")
    search_fields = ("name", "write_key")
    readonly_fields = ("write_key", "created_at", "tracking_help")
    fields = (
        "name", "kind", "enabled", "write_key", "allowed_redirect_domains", "signing_key", "webhook_url",
        "tracking_help", "created_at",
    )  # fmt: skip

    @admin.display(description="Debugger")
    def debugger_link(self, obj: Source) -> str:
        return format_html('<a href="{}">recent messages</a>', reverse("admin:ingest_source_debugger", args=[obj.pk]))

    @admin.display(description="How to send")
    def tracking_help(self, obj: Source) -> str:
        if not obj.pk:
            return "Save the source to get its write key or webhook URL."
        if obj.kind == Source.Kind.SQL:
            return "A SQL trait's runs send their identify calls from this source (Admin → SQL traits)."
        if obj.kind != Source.Kind.HTTP:
            url = webhook_url(obj, base_url=settings.CDP_PUBLIC_URL)
            extra = (
                format_html(" Bearer token: <code>{}</code>.", obj.webhook_secret)
                if obj.kind == Source.Kind.BRAZE
                else ""
            )
            return format_html(
                'Paste this URL into {}: <code id="webhook-url">{}</code>.{}', obj.get_kind_display(), url, extra
            )
        return format_html(
            "Point any Segment SDK at <code>{}</code> with write key <code>{}</code>.",
            settings.CDP_PUBLIC_URL,
            obj.write_key,
        )

    def _allowed(self, request: HttpRequest, *also: str) -> None:
        """The debugger and the campaign report show what sources received: they need the
        source view permission (and what else they show, e.g. people)."""
        if not self.has_view_or_change_permission(request) or not request.user.has_perms(also):
            raise PermissionDenied

    def get_urls(self) -> list[URLPattern]:
        own = [
            path("debugger/", self.admin_site.admin_view(self.overview_view), name="ingest_debugger"),
            path("<int:pk>/debugger/", self.admin_site.admin_view(self.source_view), name="ingest_source_debugger"),
            path("<int:pk>/debugger/retry/", self.admin_site.admin_view(self.retry_view), name="ingest_batch_retry"),
            path("unknown/debugger/", self.admin_site.admin_view(self.unknown_view), name="ingest_unknown_debugger"),
            path("email-report/", self.admin_site.admin_view(self.campaigns_view), name="ingest_email_campaigns"),
            path("email-report/campaign/", self.admin_site.admin_view(self.campaign_view), name="ingest_email_report"),
            path("email-report/people/", self.admin_site.admin_view(self.people_view), name="ingest_email_people"),
        ]
        return own + super().get_urls()

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
        extra_context = {
            **(extra_context or {}),
            "debugger_url": reverse("admin:ingest_debugger"),
            "email_report_url": reverse("admin:ingest_email_campaigns"),
        }
        return super().changelist_view(request, extra_context)

    def overview_view(self, request: HttpRequest) -> HttpResponse:
        self._allowed(request)
        context = {
            **self.admin_site.each_context(request),
            "title": "Ingest debugger",
            "rows": selectors.debugger_overview(),
            "missed_pixels": selectors.debugger_missed_pixels(),
            "opts": self.model._meta,
        }
        return TemplateResponse(request, "admin/ingest/debugger_overview.html", context)

    def source_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        self._allowed(request)
        source = get_object_or_404(Source, pk=pk)
        return self._recent(request, source, f"Ingest debugger: {source.name}")

    def unknown_view(self, request: HttpRequest) -> HttpResponse:
        self._allowed(request)
        return self._recent(request, None, "Ingest debugger: requests with no valid write key")

    def _recent(self, request: HttpRequest, source: Source | None, title: str) -> HttpResponse:
        accepted, rejected = selectors.debugger_recent(source_id=source.pk if source else None)
        context = {
            **self.admin_site.each_context(request),
            "title": title,
            "source": source,
            "accepted": accepted,
            "rejected": rejected,
            "waiting": selectors.debugger_waiting(source_id=source.pk) if source else (0, None),
            "notices": selectors.debugger_notices(source_id=source.pk if source else UNKNOWN_SOURCE),
            "parked": selectors.debugger_parked(source_id=source.pk) if source else [],
            "can_change": self.has_change_permission(request, source),
            "opts": self.model._meta,
        }
        return TemplateResponse(request, "admin/ingest/debugger_source.html", context)

    def retry_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        """POST: send a parked batch back to the pipeline (change permission, with a reason)."""
        source = get_object_or_404(Source, pk=pk)
        if request.method != "POST" or not self.has_change_permission(request, source):
            raise PermissionDenied
        reason = request.POST.get(REASON, "").strip()
        if not reason:
            messages.error(request, "Say why: a reason is required to retry a batch.")
        elif batch_retry(batch_id=int(request.POST.get("batch") or 0), source_id=pk, actor=request.user, reason=reason):
            messages.success(request, "The batch is back in the pipeline.")
        else:
            messages.error(request, "That batch is not parked (any more).")
        return HttpResponseRedirect(reverse("admin:ingest_source_debugger", args=[pk]))

    # --- Email campaign report ---------------------------------------------------------------

    def campaigns_view(self, request: HttpRequest) -> HttpResponse:
        self._allowed(request)
        context = {
            **self.admin_site.each_context(request),
            "title": "Email campaigns",
            "campaigns": email_report.email_campaigns(),
            "opts": self.model._meta,
        }
        return TemplateResponse(request, "admin/ingest/email_campaigns.html", context)

    def campaign_view(self, request: HttpRequest) -> HttpResponse:
        self._allowed(request)
        campaign = request.GET.get("campaign", "")
        if not campaign:
            raise Http404("Which campaign? Pass ?campaign=.")
        report = email_report.email_campaign_report(campaign=campaign)
        context = {
            **self.admin_site.each_context(request),
            "title": f"Email campaign: {campaign}",
            "report": report,
            "chart": timeline_svg(report.series, bucket=report.bucket),
            "opts": self.model._meta,
        }
        return TemplateResponse(request, "admin/ingest/email_report.html", context)

    def people_view(self, request: HttpRequest) -> HttpResponse:
        self._allowed(request, "profiles.view_profile")
        campaign, metric = request.GET.get("campaign", ""), request.GET.get("metric", "")
        if not campaign or metric not in email_report.METRICS:
            raise Http404("Pass ?campaign= and a known ?metric=.")
        people, count = email_report.email_campaign_people(campaign=campaign, metric=metric)
        context = {
            **self.admin_site.each_context(request),
            "title": f"{email_report.METRICS[metric].label}: {campaign}",
            "campaign": campaign,
            "people": people,
            "count": count,
            "opts": self.model._meta,
        }
        return TemplateResponse(request, "admin/ingest/email_people.html", context)


@admin.register(RejectedMessage)
class RejectedMessageAdmin(AuditedModelAdmin[RejectedMessage]):
    list_display = ("received_at", "source", "endpoint", "index", "code", "reason")
    list_filter = ("code", "source", "endpoint")
    search_fields = ("reason", "payload")
    date_hierarchy = "received_at"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: RejectedMessage | None = None) -> bool:
        return False
