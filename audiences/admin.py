"""The marketer's audiences in the admin: the list (size, status, a 30-day trend), the builder
(the add and change pages: `AudienceForm` with the `RuleBuilder` widget and its live preview),
and the audience page (status, size over time, members now or on a day, history, versions).

Saving calls `audience_create` / `audience_update` (a new rule is a new version, audited with
who and why), deleting `audience_delete`, as the REST API does. The preview, property and query
endpoints the builder calls are JSON views under the admin, behind its login and permissions."""

from __future__ import annotations

import json
from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.forms import ModelForm
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html
from django.utils.safestring import SafeString

from audiences import admin_views
from audiences.admin_forms import AudienceForm, RuleBuilder
from audiences.charts import sparkline_svg
from audiences.describe import rule_diff
from audiences.models import Audience, AudienceVersion
from audiences.rules import parse_rule, rule_json
from audiences.selectors import audiences_days, audiences_referencing
from audiences.services import audience_create, audience_delete, audience_update
from audit.admin import REASON, AuditedModelAdmin
from profiles.query.filters import QueryError

# What the form edits, as the services name it (`key` and `include_anonymous` only at creation).
FORM_FIELDS = ("key", "name", "description", "rule", "include_anonymous", "enabled", "schedule_minutes")
TREND_DAYS = 30
STATUS_COLOURS = {"live": "#1f9d55", "computing": "#2a6fdb", "preparing": "#2a6fdb", "failed": "#d64545",
                  "disabled": "#777"}  # fmt: skip


def status_badge(status: str) -> SafeString:
    return format_html('<span class="ab-status-badge" style="--c:{}">{}</span>', STATUS_COLOURS.get(status, "#777"),
                       status)  # fmt: skip


@admin.register(Audience)
class AudienceAdmin(AuditedModelAdmin[Audience]):
    form = AudienceForm
    change_form_template = "admin/audiences/audience/change_form.html"
    list_display = ("name_link", "key", "status_label", "size_label", "trend", "last_computed_at", "version")
    list_display_links = None
    list_filter = ("status", "enabled")
    search_fields = ("key", "name")
    fieldsets = [
        (None, {"fields": ["name", "key", "description"]}),
        ("Rule", {"fields": ["rule"], "classes": ["ab-fieldset"]}),
        ("Options", {"fields": ["include_anonymous", "enabled", "schedule_minutes"], "classes": ["collapse"]}),
    ]

    # --- the list ------------------------------------------------------------------------------

    @admin.display(description="Audience", ordering="name")
    def name_link(self, obj: Audience) -> str:
        return format_html('<a href="{}">{}</a>', reverse("admin:audiences_audience_page", args=[obj.pk]), obj.name)

    @admin.display(description="Status", ordering="status")
    def status_label(self, obj: Audience) -> str:
        return status_badge(obj.status)

    @admin.display(description="Size", ordering="size")
    def size_label(self, obj: Audience) -> str:
        return f"{obj.size:,}"

    @admin.display(description=f"Last {TREND_DAYS} days")
    def trend(self, obj: Audience) -> str:
        return getattr(obj, "trend_svg", "")

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
        response = super().changelist_view(request, extra_context)
        cl = getattr(response, "context_data", {}).get("cl") if isinstance(response, TemplateResponse) else None
        if cl is not None:
            rows = list(cl.result_list)  # the page's rows, cached for the template
            days = audiences_days(audience_ids=[a.pk for a in rows], days=TREND_DAYS)
            for a in rows:
                a.trend_svg = sparkline_svg([d.size for d in days[a.pk]])
        return response

    # --- the builder: add and change -----------------------------------------------------------

    def builder(self, obj: Audience | None, *, readonly: bool) -> RuleBuilder:
        return RuleBuilder(
            urls={name: reverse(f"admin:audiences_audience_{name}") for name in ("preview", "properties", "query")},
            key=obj.key if obj else "", readonly=readonly, include_anonymous=bool(obj and obj.include_anonymous),
        )  # fmt: skip

    def get_form(self, request: HttpRequest, obj: Audience | None = None, change: bool = False, **kwargs: Any) -> Any:
        kwargs["widgets"] = {"rule": self.builder(obj, readonly=False)}
        return super().get_form(request, obj, change=change, **kwargs)

    def get_readonly_fields(self, request: HttpRequest, obj: Audience | None = None) -> Any:
        return ("key", "include_anonymous") if obj is not None else ()

    def get_fieldsets(self, request: HttpRequest, obj: Audience | None = None) -> Any:
        fieldsets = super().get_fieldsets(request, obj)
        if obj is not None and not self.has_change_permission(request, obj):  # view only: the builder, read-only
            return [(name, {**opts, "fields": ["rule_view" if f == "rule" else f for f in opts["fields"]]})
                    for name, opts in fieldsets]  # fmt: skip
        return fieldsets

    @admin.display(description="Rule")
    def rule_view(self, obj: Audience) -> str:
        return self.builder(obj, readonly=True).render("rule", json.dumps(obj.rule), attrs={"id": "id_rule"})

    def save_model(self, request: HttpRequest, obj: Audience, form: ModelForm[Audience], change: bool) -> None:
        """Through the services: a changed rule is a new version; the audit row (who, why,
        before and after) is written in the same transaction."""
        reason = str(form.cleaned_data.get(REASON) or "")
        if change:
            current = Audience.objects.get(pk=obj.pk)
            data = {name: form.cleaned_data[name] for name in form.changed_data if name in FORM_FIELDS}
            for fixed in ("key", "include_anonymous"):  # set once, at creation
                data.pop(fixed, None)
            if "rule" in data and rule_json(parse_rule(data["rule"])) == current.rule:
                data.pop("rule")  # the same rule (however it was spelled): no new version
            saved = audience_update(key=current.key, data=data, actor=request.user, reason=reason)
        else:
            data = {name: form.cleaned_data[name] for name in FORM_FIELDS if name in form.cleaned_data}
            saved = audience_create(data=data, actor=request.user, reason=reason)
        obj.pk = saved.pk
        obj.refresh_from_db()

    def _to_page(self, request: HttpRequest, obj: Audience, response: HttpResponse) -> HttpResponse:
        if any(k in request.POST for k in ("_continue", "_addanother", "_saveasnew")):
            return response
        return HttpResponseRedirect(reverse("admin:audiences_audience_page", args=[obj.pk]))

    def response_add(self, request: HttpRequest, obj: Audience, post_url_continue: str | None = None) -> HttpResponse:
        return self._to_page(request, obj, super().response_add(request, obj, post_url_continue))

    def response_change(self, request: HttpRequest, obj: Audience) -> HttpResponse:
        return self._to_page(request, obj, super().response_change(request, obj))

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        extra_context = {**(extra_context or {}), "versions": self.versions(object_id)}
        return super().change_view(request, object_id, form_url, extra_context)

    @staticmethod
    def versions(object_id: str) -> list[dict[str, Any]]:
        """Every version, newest first, with who, when, why and what changed from the one before."""
        try:
            rows = list(AudienceVersion.objects.filter(audience_id=int(object_id)).order_by("version"))
        except ValueError:
            return []
        out, before = [], None
        for v in rows:
            out.append({"v": v, "diff": rule_diff(before, v.rule)})
            before = v.rule
        return out[::-1]

    # --- deleting --------------------------------------------------------------------------------

    def delete_view(
        self, request: HttpRequest, object_id: str, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        audience = self.get_object(request, object_id)
        users = audiences_referencing(key=audience.key) if audience else []
        if audience and users:
            messages.error(request, f"{audience} is used by {', '.join(users)}: change those first.")
            return HttpResponseRedirect(reverse("admin:audiences_audience_page", args=[audience.pk]))
        return super().delete_view(request, object_id, extra_context)

    def delete_model(self, request: HttpRequest, obj: Audience) -> None:
        audience_delete(key=obj.key, actor=request.user, reason=str(request.POST.get(REASON, "")))

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Audience]) -> None:
        for key in queryset.values_list("key", flat=True):
            try:
                audience_delete(key=key, actor=request.user, reason=str(request.POST.get(REASON, "")))
            except QueryError as exc:
                messages.error(request, exc.message)

    # --- the audience page and the builder's endpoints ----------------------------------------

    def may_read(self, request: HttpRequest) -> None:
        if not (self.has_view_or_change_permission(request) or self.has_add_permission(request)):
            raise PermissionDenied

    def get_urls(self) -> list[URLPattern]:
        def view(fn: Any) -> Any:
            return self.admin_site.admin_view(fn)

        me = {"model_admin": self}
        own = [
            path("<int:pk>/page/", view(admin_views.audience_page), me, name="audiences_audience_page"),
            path("<int:pk>/compute/", view(admin_views.audience_compute_now), me, name="audiences_audience_compute"),
            path("preview/", view(admin_views.preview), me, name="audiences_audience_preview"),
            path("properties/", view(admin_views.properties), me, name="audiences_audience_properties"),
            path("query/", view(admin_views.query), me, name="audiences_audience_query"),
        ]
        return own + super().get_urls()
