"""Admin for computed traits and scores: a builder with forms (events and properties picked
from those seen, filters and rules as rows), a preview of the values before saving, and a
"Recompute now" action. Saving, deleting and recomputing go through
`profiles.computed.services`, which audit and recompute. Registered from
`ProfilesConfig.ready`, like the token admin."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.forms import ModelForm
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html

from audit.admin import REASON, AuditedModelAdmin, reason_confirmation
from profiles.admin_computed_forms import OP_CHOICES, ComputedTraitForm, DefinitionForm, FilterRowForm, RuleForm
from profiles.computed.definitions import TYPES, WITH_PROPERTY
from profiles.computed.selectors import (
    Preview,
    PreviewTooSlow,
    definition_preview,
    event_names,
    event_properties,
)
from profiles.computed.services import (
    computed_trait_create,
    computed_trait_delete,
    computed_trait_recompute,
    computed_trait_update,
    definition_of,
)
from profiles.computed.summary import TYPE_LABELS, definition_summary
from profiles.models import ComputedTrait
from profiles.query.filters import QueryError

TEMPLATES = "admin/profiles/computedtrait"
# Which types show which parts of the builder (`data-types` in the template).
SHOWN_FOR = {
    "event": " ".join(t for t in TYPES if t != "score"),
    "property": " ".join(WITH_PROPERTY),
    "min_frequency": "most_frequent",
    "score": "score",
}


class TypeFilter(admin.SimpleListFilter):
    title = "type"
    parameter_name = "type"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return list(TYPE_LABELS.items())

    def queryset(self, request: HttpRequest, queryset: QuerySet[ComputedTrait]) -> QuerySet[ComputedTrait]:
        return queryset.filter(type=self.value()) if self.value() else queryset


@admin.register(ComputedTrait)
class ComputedTraitAdmin(AuditedModelAdmin[ComputedTrait]):
    form = ComputedTraitForm
    change_form_template = f"{TEMPLATES}/change_form.html"
    list_display = ("key", "name", "type_label", "definition", "status_label", "last_computed_at", "duration",
                    "profiles_with_value")  # fmt: skip
    list_filter = (TypeFilter, "status", "enabled")
    search_fields = ("key", "name")
    actions = ["recompute"]

    class Media:
        css = {"all": ("profiles/computed_traits.css",)}

    readonly_status = ("status", "last_computed_at", "last_duration_ms", "profiles_with_value", "last_error")
    # The definition itself is drawn between the first fieldset and the others (the template).
    fieldsets = (
        (None, {"fields": ["key", "name", "description"]}),
        ("Schedule", {"fields": ["schedule_hours", "enabled"]}),
        ("Status", {"fields": list(readonly_status)}),
    )

    def get_fieldsets(self, request: HttpRequest, obj: ComputedTrait | None = None) -> Any:
        """A new definition has no status yet; AuditedModelAdmin adds the reason."""
        fieldsets = super().get_fieldsets(request, obj)
        return [fs for fs in fieldsets if obj is not None or fs[0] != "Status"]

    def get_readonly_fields(self, request: HttpRequest, obj: ComputedTrait | None = None) -> Any:
        return ("key", *self.readonly_status) if obj is not None else ()

    # --- the list -------------------------------------------------------------------------

    @admin.display(description="Type", ordering="type")
    def type_label(self, obj: ComputedTrait) -> str:
        return TYPE_LABELS.get(obj.type, obj.type)

    @admin.display(description="Definition")
    def definition(self, obj: ComputedTrait) -> str:
        try:
            return definition_summary(definition_of(obj))
        except QueryError:
            return "(unreadable)"

    @admin.display(description="Status", ordering="status")
    def status_label(self, obj: ComputedTrait) -> str:
        return format_html('<span class="cta-status cta-{}" title="{}">{}</span>', obj.status, obj.last_error,
                           obj.get_status_display())  # fmt: skip

    @admin.display(description="Duration", ordering="last_duration_ms")
    def duration(self, obj: ComputedTrait) -> str:
        ms = obj.last_duration_ms
        if ms is None:
            return "—"
        return f"{ms} ms" if ms < 1000 else f"{ms / 1000:.1f} s"

    @admin.action(description="Recompute now", permissions=["change"])
    def recompute(self, request: HttpRequest, queryset: QuerySet[ComputedTrait]) -> HttpResponse | None:
        def act(reason: str) -> str:
            ids = list(queryset.values_list("pk", flat=True))
            queued = sum(computed_trait_recompute(trait_id=pk, actor=request.user, reason=reason) for pk in ids)
            skipped = f" {len(ids) - queued} disabled, not queued." if queued < len(ids) else ""
            return f"{queued} queued for a full recompute.{skipped}"

        return reason_confirmation(self, request, queryset, title="Recompute these computed traits now", act=act)

    # --- saving and deleting: the services ----------------------------------------------------

    def save_model(
        self, request: HttpRequest, obj: ComputedTrait, form: ModelForm[ComputedTrait], change: bool
    ) -> None:
        """The services save, audit (with the reason) and queue the recompute."""
        assert isinstance(form, ComputedTraitForm)
        data, reason = form.service_data(), form.cleaned_data.get(REASON, "")
        if change:
            trait = computed_trait_update(key=obj.key, data=data, actor=request.user, reason=reason)
        else:
            trait = computed_trait_create(data=data, actor=request.user, reason=reason)
        obj.pk = trait.pk
        obj.refresh_from_db()

    def delete_model(self, request: HttpRequest, obj: ComputedTrait) -> None:
        computed_trait_delete(key=obj.key, actor=request.user, reason=request.POST.get(REASON, ""))

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[ComputedTrait]) -> None:
        for key in list(queryset.values_list("key", flat=True)):
            computed_trait_delete(key=key, actor=request.user, reason=request.POST.get(REASON, ""))

    # --- the builder --------------------------------------------------------------------------

    def render_change_form(
        self,
        request: HttpRequest,
        context: dict[str, Any],
        add: bool = False,
        change: bool = False,
        form_url: str = "",
        obj: ComputedTrait | None = None,
    ) -> HttpResponse:
        writable = self._can_write(request, obj)
        form = context["adminform"].form
        context["cta"] = {
            "form": form.definition_form,
            "writable": writable,
            "events": [(name, f"{name} ({count:,} event{'' if count == 1 else 's'})") for name, count in event_names()]
            if writable
            else [],
            "filter_template": FilterRowForm(prefix="__P__"),
            "rule_template": RuleForm(prefix="rules-__R__"),
            "ops": OP_CHOICES,
            "shown_for": SHOWN_FOR,
            "properties_url": reverse("admin:profiles_computedtrait_properties"),
            "preview_url": reverse("admin:profiles_computedtrait_preview"),
            "summary": self.definition(obj) if obj is not None else "",
            "type_label": TYPE_LABELS.get(obj.type, obj.type) if obj is not None else "",
        }
        return super().render_change_form(request, context, add, change, form_url, obj)

    def get_urls(self) -> list[URLPattern]:
        own = [
            path("properties/", self.admin_site.admin_view(self.properties_view),
                 name="profiles_computedtrait_properties"),
            path("preview/", self.admin_site.admin_view(self.preview_view), name="profiles_computedtrait_preview"),
        ]  # fmt: skip
        return own + super().get_urls()

    def _may_build(self, request: HttpRequest) -> bool:
        """The pickers and the preview read only: anyone who may see or make definitions."""
        return self.has_view_or_change_permission(request) or self.has_add_permission(request)

    def properties_view(self, request: HttpRequest) -> JsonResponse:
        """`?event=Order Completed`: the properties seen on its newest events, with how many
        of them carry each and a few example values."""
        if not self._may_build(request):
            raise PermissionDenied
        event = request.GET.get("event", "").strip()
        found = event_properties(event=event) if event else []
        return JsonResponse({
            "event": event,
            "properties": [{"path": p, "events": n, "examples": examples} for p, n, examples in found],
        })  # fmt: skip

    def preview_view(self, request: HttpRequest) -> TemplateResponse:
        """POST the builder's fields (or GET `?key=` for a saved definition): the values the
        definition would give on current data, computed and written nowhere."""
        if not self._may_build(request):
            raise PermissionDenied
        context: dict[str, Any] = {}
        status = 200
        if request.method == "POST":
            form = DefinitionForm(request.POST)
            defn = form.parse()
            if defn is None:
                context["errors"], status = form.messages(), 400
        else:
            defn = definition_of(get_object_or_404(ComputedTrait, key=request.GET.get("key", "")))
        if defn is not None:
            try:
                preview = definition_preview(defn=defn)
            except PreviewTooSlow as exc:
                context["too_slow"] = str(exc)
            else:
                context |= {"preview": preview, "bars": preview_bars(preview)}
            context["summary"] = definition_summary(defn)
        return TemplateResponse(request, f"{TEMPLATES}/_preview.html", context, status=status)


def preview_bars(preview: Preview) -> list[tuple[str, int, int]]:
    """Pure. The preview's rows: (what, profiles, bar width in percent of the largest): a few
    numbers one by one, more as a histogram, anything else its top values."""
    d = preview.distribution
    if preview.numbers:
        rows = [(_num(v), n) for v, n in preview.numbers]
    elif d.kind == "numbers":
        rows = [(f"{_num(lo)} to {_num(hi)}", n) for lo, hi, n in d.histogram]
    else:
        rows = [(str(v), n) for v, n in d.top]
    top = max((n for _, n in rows), default=0) or 1
    return [(label, n, round(100 * n / top)) for label, n in rows]


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:,.2f}".rstrip("0").rstrip(".")
