"""Destinations in the admin: the list with each one's last 24 hours, the form per kind, the
delivery log (filters, the dead rows with their request and response, replay), "Send a test
message", full syncs' progress. Saving, deleting and replaying go through the services, which
audit who and why; staff who may only view see everything and change nothing."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import Count, Min, Q, QuerySet
from django.forms import ModelForm
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join

from audit.admin import REASON, AuditedModelAdmin, ReasonForm, reason_confirmation
from destinations.admin_forms import DestinationForm
from destinations.definitions import public_settings
from destinations.models import Delivery, Destination, FullSync
from destinations.selectors import DAY, deliveries_page
from destinations.services import deliveries_replay, destination_create, destination_delete, destination_test
from destinations.services import destination_update as update

LOG_PAGE = 50


class ReplayForm(ReasonForm):
    delivery = forms.CharField(required=False, widget=forms.HiddenInput)


@admin.register(Destination)
class DestinationAdmin(AuditedModelAdmin[Destination]):
    form = DestinationForm
    list_display = ("name", "kind", "enabled", "delivered_24h", "pending", "retrying", "discarded_24h", "dead_24h",
                    "oldest_pending", "error", "log_link")  # fmt: skip
    list_filter = ("kind", "enabled")
    search_fields = ("name",)
    readonly_fields = ("health", "syncs")
    change_form_template = "admin/destinations/destination/change_form.html"
    fieldsets = (
        (None, {"fields": ("name", "kind", "enabled")}),
        ("What it takes", {"fields": ("all_audiences", "audience_keys", "all_traits", "trait_keys", "event_sources",
                                      "event_names", "consent_categories")}),
        ("Webhook", {"fields": ("urls", "shared_secret")}),
        ("Mailjet and Mailchimp", {"fields": ("api_key", "api_secret", "lists", "list_id", "merge_fields",
                                              "status_if_new", "base_url")}),
    )  # fmt: skip

    def get_readonly_fields(self, request: HttpRequest, obj: Destination | None = None) -> Any:
        if obj is not None and not self.has_change_permission(request, obj):
            return ("name", "kind", "enabled", "takes", "settings_shown", "health", "syncs")
        return self.readonly_fields

    def get_fieldsets(self, request: HttpRequest, obj: Destination | None = None) -> Any:
        if obj is not None and not self.has_change_permission(request, obj):  # view only: what it is, as text
            return [(None, {"fields": list(self.get_readonly_fields(request, obj))})]
        sets = list(super().get_fieldsets(request, obj))
        if obj is not None:
            sets.insert(1, ("State", {"fields": ["health", "syncs"]}))
        return sets

    def get_queryset(self, request: HttpRequest) -> QuerySet[Destination]:
        since = timezone.now() - DAY

        def ended(status: str) -> Count:
            return Count("deliveries", filter=Q(deliveries__status=status, deliveries__finished_at__gte=since))

        pending = Q(deliveries__status="pending")
        return super().get_queryset(request).annotate(
            n_delivered=ended("delivered"), n_discarded=ended("discarded"), n_dead=ended("dead"),
            n_pending=Count("deliveries", filter=pending),
            n_retrying=Count("deliveries", filter=pending & Q(deliveries__attempts__gt=0)),
            first_pending=Min("deliveries__created_at", filter=pending),
        )  # fmt: skip

    # --- the list ---------------------------------------------------------------------------------

    @admin.display(description="Delivered (24 h)", ordering="n_delivered")
    def delivered_24h(self, obj: Any) -> int:
        return int(obj.n_delivered)

    @admin.display(description="Pending", ordering="n_pending")
    def pending(self, obj: Any) -> int:
        return int(obj.n_pending)

    @admin.display(description="Retrying")
    def retrying(self, obj: Any) -> int:
        return int(obj.n_retrying)

    @admin.display(description="Discarded (24 h)")
    def discarded_24h(self, obj: Any) -> int:
        return int(obj.n_discarded)

    @admin.display(description="Dead (24 h)")
    def dead_24h(self, obj: Any) -> Any:
        n = int(obj.n_dead)
        url = reverse("admin:destinations_destination_deliveries", args=[obj.pk]) + "?status=dead"
        return format_html('<a href="{}" class="dead">{}</a>', url, n) if n else 0

    @admin.display(description="Oldest pending")
    def oldest_pending(self, obj: Any) -> str:
        if not obj.first_pending:
            return "-"
        seconds = int((timezone.now() - obj.first_pending).total_seconds())
        return f"{seconds} s" if seconds < 120 else f"{seconds // 60} min" if seconds < 7200 else f"{seconds // 3600} h"

    @admin.display(description="Last error (24 h)")
    def error(self, obj: Destination) -> str:
        recent = obj.last_error_at is not None and obj.last_error_at >= timezone.now() - DAY
        return f"{obj.last_error[:160]} ({obj.last_error_at:%H:%M})" if recent and obj.last_error_at else ""

    @admin.display(description="Deliveries")
    def log_link(self, obj: Destination) -> str:
        return format_html('<a href="{}">log</a>', reverse("admin:destinations_destination_deliveries", args=[obj.pk]))

    @admin.display(description="Last 24 hours")
    def health(self, obj: Any) -> str:
        return format_html(
            "{} delivered, {} pending ({} retrying), {} discarded, {} dead. {} {}", obj.n_delivered, obj.n_pending,
            obj.n_retrying, obj.n_discarded, obj.n_dead,
            f"Paused after a failure until {obj.paused_until:%H:%M:%S}." if obj.paused_until and
            obj.paused_until > timezone.now() else "", self.error(obj),
        )  # fmt: skip

    @admin.display(description="Takes")
    def takes(self, obj: Destination) -> str:
        def keys(value: Any) -> str:
            return "every one" if value == "all" else ", ".join(value) or "none"

        events = obj.events or {}
        stream = (
            (
                f"; events of sources {', '.join(map(str, events.get('sources', [])))}"
                f" ({', '.join(events.get('names') or ['every name'])})"
            )
            if events.get("sources")
            else ""
        )
        consent = f"; consent needed: {', '.join(obj.consent_categories)}" if obj.consent_categories else ""
        return f"audiences: {keys(obj.audiences)}; computed traits: {keys(obj.traits)}{stream}{consent}"

    @admin.display(description="Settings")
    def settings_shown(self, obj: Destination) -> str:
        return ", ".join(f"{k}: {v}" for k, v in public_settings(obj.settings).items()) + " (secrets are never shown)"

    @admin.display(description="Full syncs")
    def syncs(self, obj: Destination) -> str:
        rows = list(FullSync.objects.filter(destination=obj)[:10])
        if not rows:
            return "None."
        items = format_html_join(
            "",
            "<li>{}: {} {}% ({} of {}){}</li>",
            ((s.subject, s.status, s.progress, s.done, s.total, f": {s.error}" if s.error else "") for s in rows),
        )
        return format_html('<ul class="full-syncs">{}</ul>', items)

    # --- saving through the services (which audit) ------------------------------------------------

    def save_model(self, request: HttpRequest, obj: Destination, form: ModelForm[Destination], change: bool) -> None:
        body = form.body()  # type: ignore[attr-defined]
        reason = form.cleaned_data.get(REASON, "")
        if change:
            body.pop("kind", None)
            saved = update(destination_id=obj.pk, data=body, actor=request.user, reason=reason)
        else:
            saved = destination_create(data=body, actor=request.user, reason=reason or "created in the admin")
        obj.pk = saved.pk

    def delete_model(self, request: HttpRequest, obj: Destination) -> None:
        destination_delete(destination_id=obj.pk, actor=request.user, reason=request.POST.get(REASON, "").strip())

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Destination]) -> None:
        for dest in list(queryset):
            self.delete_model(request, dest)

    # --- the delivery log, replay, test ---------------------------------------------------------

    def has_replay_permission(self, request: HttpRequest) -> bool:
        return bool(request.user.has_perm("destinations.replay_delivery"))

    def get_urls(self) -> list[URLPattern]:
        def view(fn: Any) -> Any:
            return self.admin_site.admin_view(fn)

        return [
            path("<int:pk>/deliveries/", view(self.deliveries_view), name="destinations_destination_deliveries"),
            path("<int:pk>/replay/", view(self.replay_view), name="destinations_destination_replay"),
            path("<int:pk>/test/", view(self.test_view), name="destinations_destination_test"),
            *super().get_urls(),
        ]

    def deliveries_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        dest = get_object_or_404(Destination, pk=pk)
        if not self.has_view_or_change_permission(request, dest):
            raise PermissionDenied
        status = request.GET.get("status") or None
        if status not in (None, *Delivery.Status.values):
            status = None
        before = request.GET.get("before", "")
        rows, after = deliveries_page(destination_id=dest.pk, status=status, limit=LOG_PAGE,
                                      before=int(before) if before.isdigit() else None)  # fmt: skip
        context = {
            **self.admin_site.each_context(request), "title": f"Deliveries to {dest.name}", "destination": dest,
            "opts": self.model._meta, "rows": rows, "after": after, "status": status or "",
            "statuses": Delivery.Status.values, "can_replay": self.has_replay_permission(request),
            "dead": Delivery.objects.filter(destination=dest, status="dead").count(),
        }  # fmt: skip
        return TemplateResponse(request, "admin/destinations/deliveries.html", context)

    def replay_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        """GET asks why; POST with a reason replays one delivery (`delivery=`) or every dead one."""
        dest = get_object_or_404(Destination, pk=pk)
        if not (self.has_view_or_change_permission(request, dest) and self.has_replay_permission(request)):
            raise PermissionDenied
        one = str(request.POST.get("delivery") or request.GET.get("delivery") or "")
        delivery_id = int(one) if one.isdigit() else None
        what = f"delivery {delivery_id}" if delivery_id else "every dead delivery"

        def act(reason: str) -> str:
            n = deliveries_replay(destination_id=dest.pk, delivery_id=delivery_id, actor=request.user, reason=reason)
            return f"{n} replayed: they are pending again, with the same messageId."

        posted = "apply" in request.POST
        form = ReplayForm(request.POST if posted else None, initial={"delivery": delivery_id or ""})
        title = f"Replay {what} of {dest.name}: pending again, with the same messageId"
        answer = reason_confirmation(self, request, Destination.objects.filter(pk=pk), form=form, act=act, title=title)
        return answer or HttpResponseRedirect(reverse("admin:destinations_destination_deliveries", args=[pk]))

    def test_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        """POST sends a test message now and says what came of it."""
        dest = get_object_or_404(Destination, pk=pk)
        if request.method != "POST" or not self.has_change_permission(request, dest):
            raise PermissionDenied
        row = destination_test(destination_id=dest.pk, actor=request.user)
        level = messages.SUCCESS if row.status == "delivered" else messages.ERROR
        detail = f": {row.reason}" if row.status != "delivered" else ""
        self.message_user(request, f"Test message {row.status}{detail}.", level)
        return HttpResponseRedirect(reverse("admin:destinations_destination_change", args=[pk]))

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        obj = self.get_object(request, object_id)
        extra_context = {
            **(extra_context or {}),
            "can_test": obj is not None and self.has_change_permission(request, obj),
        }
        return super().change_view(request, object_id, form_url, extra_context)
