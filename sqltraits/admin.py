"""SQL traits in the admin: the definition with a query editor, "Run now" (its own permission,
`sqltraits.run_sqltrait`, asking why), the recent runs on the definition's page, and every run
with its report. Saving and deleting go through the services, which audit them."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.forms import ModelForm
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.loader import render_to_string
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html
from django.utils.safestring import SafeString

from audit.admin import REASON, AuditedModelAdmin, reason_confirmation
from sqltraits.definitions import FIELDS, DefinitionError, definition_parse
from sqltraits.models import SqlTrait, SqlTraitRun
from sqltraits.selectors import sql_trait_runs
from sqltraits.services import sql_trait_create, sql_trait_delete, sql_trait_run_request, sql_trait_update

RECENT_RUNS = 10


class SqlTraitForm(forms.ModelForm[SqlTrait]):
    class Meta:
        model = SqlTrait
        fields = ["key", "name", "identifier", "query", "every_hours", "enabled"]
        widgets = {
            "query": forms.Textarea(attrs={
                "rows": 14, "cols": 100, "spellcheck": "false", "class": "vLargeTextField sql-editor",
                "style": "font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: 13px",
                "placeholder": "SELECT user_id, count(*) AS open_tickets FROM tickets WHERE status = 'open' "
                               "GROUP BY user_id",
            }),
        }  # fmt: skip

    def clean(self) -> dict[str, Any]:
        """The definition checked as the API checks it; an error goes to its field."""
        data = super().clean() or {}
        key = self.instance.key if self.instance.pk else data.get("key")
        fields = {f: data.get(f, getattr(self.instance, f, None)) for f in FIELDS if f != "key"}
        if fields.get("name") == "":
            fields["name"] = None
        try:
            definition_parse({**fields, "key": key})
        except DefinitionError as exc:
            field = exc.path if exc.path in self.fields else None
            self.add_error(field, exc.message)
        return data


@admin.register(SqlTrait)
class SqlTraitAdmin(AuditedModelAdmin[SqlTrait]):
    form = SqlTraitForm
    list_display = ("key", "name", "identifier", "every_hours", "enabled", "last_run_at", "last_status", "runs_link")
    list_filter = ("enabled", "last_status", "identifier")
    search_fields = ("key", "name")
    readonly_fields = ("source", "last_run_at", "last_status", "last_error", "recent_runs")
    fields = ("key", "name", "identifier", "query", "every_hours", "enabled", *readonly_fields)
    actions = ("run_now",)
    change_form_template = "admin/sqltraits/sqltrait/change_form.html"

    def get_readonly_fields(self, request: HttpRequest, obj: SqlTrait | None = None) -> Any:
        return ("key", *self.readonly_fields) if obj is not None else self.readonly_fields

    def has_run_permission(self, request: HttpRequest) -> bool:
        return bool(request.user.has_perm("sqltraits.run_sqltrait"))

    # --- saving through the services (which audit) -------------------------------------------

    def save_model(self, request: HttpRequest, obj: SqlTrait, form: ModelForm[SqlTrait], change: bool) -> None:
        data = {f: form.cleaned_data[f] for f in FIELDS if f in form.cleaned_data}
        reason = form.cleaned_data.get(REASON, "")
        if change:
            saved = sql_trait_update(key=obj.key, data=data, actor=request.user, reason=reason)
        else:
            saved = sql_trait_create(data={**data, "name": data.get("name") or None}, actor=request.user,
                                     reason=reason or "created in the admin")  # fmt: skip
        obj.pk, obj.source_id, obj.name = saved.pk, saved.source_id, saved.name

    def delete_model(self, request: HttpRequest, obj: SqlTrait) -> None:
        sql_trait_delete(key=obj.key, actor=request.user, reason=request.POST.get(REASON, "").strip())

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[SqlTrait]) -> None:
        for trait in list(queryset):
            self.delete_model(request, trait)

    # --- running ----------------------------------------------------------------------------------

    def _run(self, request: HttpRequest, traits: list[SqlTrait], reason: str) -> str:
        said = []
        for trait in traits:
            run, new = sql_trait_run_request(trait_id=trait.pk, trigger="admin", actor=request.user, reason=reason)
            said.append(f"{trait.key}: run {run.pk} " + ("queued" if new else f"already {run.status}"))
        return "; ".join(said) + "."

    @admin.action(description="Run the selected SQL traits now", permissions=["run"])
    def run_now(self, request: HttpRequest, queryset: QuerySet[SqlTrait]) -> HttpResponse | None:
        traits = list(queryset)
        return reason_confirmation(self, request, queryset, title="Run these SQL traits now",
                                   act=lambda reason: self._run(request, traits, reason))  # fmt: skip

    def run_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        """The "Run now" button of a definition's page: GET asks why, POST (with a reason) queues the run."""
        trait = get_object_or_404(SqlTrait, pk=pk)
        if not (self.has_view_or_change_permission(request, trait) and self.has_run_permission(request)):
            raise PermissionDenied
        answer = reason_confirmation(self, request, SqlTrait.objects.filter(pk=pk), title=f"Run {trait.key} now",
                                     act=lambda reason: self._run(request, [trait], reason))  # fmt: skip
        return answer or HttpResponseRedirect(reverse("admin:sqltraits_sqltrait_change", args=[pk]))

    def get_urls(self) -> list[URLPattern]:
        own = [path("<int:pk>/run/", self.admin_site.admin_view(self.run_view), name="sqltraits_sqltrait_run")]
        return own + super().get_urls()

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        extra_context = {**(extra_context or {}), "can_run": self.has_run_permission(request)}
        return super().change_view(request, object_id, form_url, extra_context)

    # --- what the pages show ------------------------------------------------------------------

    @admin.display(description="Runs")
    def runs_link(self, obj: SqlTrait) -> str:
        url = reverse("admin:sqltraits_sqltraitrun_changelist") + f"?trait__id__exact={obj.pk}"
        return format_html('<a href="{}">runs</a>', url)

    @admin.display(description="Recent runs")
    def recent_runs(self, obj: SqlTrait) -> SafeString | str:
        if not obj.pk:
            return "None yet."
        runs = sql_trait_runs(trait_id=obj.pk, limit=RECENT_RUNS)
        return render_to_string("admin/sqltraits/_runs.html", {"runs": runs, "all_url": self.runs_link(obj)})


@admin.register(SqlTraitRun)
class SqlTraitRunAdmin(admin.ModelAdmin[SqlTraitRun]):
    """Read-only: a run is written by running, never edited."""

    list_display = ("id", "trait", "status", "trigger", "requested_by", "created_at", "duration_ms", "rows",
                    "people_sent", "values_changed", "people_nulled", "skipped", "error_line")  # fmt: skip
    list_filter = ("status", "trigger", "trait")
    list_select_related = ("trait",)
    fields = ("trait", "status", "trigger", "requested_by", "created_at", "started_at", "finished_at", "duration_ms",
              "rows", "people_sent", "values_changed", "people_nulled", "skipped", "report", "error")  # fmt: skip
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: SqlTraitRun | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: SqlTraitRun | None = None) -> bool:
        return False

    @admin.display(description="Error")
    def error_line(self, obj: SqlTraitRun) -> str:
        return obj.error[:120] + ("…" if len(obj.error) > 120 else "")

    @admin.display(description="Skipped rows, by reason")
    def report(self, obj: SqlTraitRun) -> SafeString | str:
        if not obj.skipped_reasons:
            return "None."
        return render_to_string("admin/sqltraits/_skipped.html", {"reasons": obj.skipped_reasons})
