"""The audit log in the admin, and `AuditedModelAdmin`: the base of every admin whose changes
people make. It asks for a reason on every change, delete and list edit, and writes the audit
row in the same transaction as the change. `reason_confirmation` does the same for custom
actions (revoke, merge, …): a page that asks why before it acts."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.actions import delete_selected
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.admin.utils import flatten_fieldsets
from django.db import models, transaction
from django.db.models import QuerySet
from django.forms import ModelForm
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse

from audit.models import AuditEntry
from audit.services import SECRET, audit_record, plain

REASON = "audit_reason"
REASON_HELP = "Why? Kept in the audit log with your name."
M = TypeVar("M", bound=models.Model)


def _reason_field(*, required: bool) -> forms.CharField:
    return forms.CharField(
        label="Reason", required=required, max_length=2000, help_text=REASON_HELP,
        widget=forms.Textarea(attrs={"rows": 2, "cols": 60}),
    )  # fmt: skip


class ReasonForm(forms.Form):
    audit_reason = _reason_field(required=True)


def _posted_reason(request: HttpRequest) -> str:
    return str(request.POST.get(REASON, "")).strip()


class AuditedModelAdmin(admin.ModelAdmin[M]):
    """Every add, change (the form and `list_editable`) and delete (one, or the selected) is
    recorded in the audit log with who and why; a change or delete without a reason is
    refused. Fields named in `audit_secret_fields` are logged as changed, never by value."""

    audit_secret_fields: Sequence[str] = ()
    delete_confirmation_template = "admin/audit/delete_confirmation.html"
    delete_selected_confirmation_template = "admin/audit/delete_selected_confirmation.html"

    # --- the reason on the change form ----------------------------------------------------

    def _can_write(self, request: HttpRequest, obj: M | None) -> bool:
        return self.has_change_permission(request, obj) if obj is not None else self.has_add_permission(request)

    def get_form(self, request: HttpRequest, obj: M | None = None, change: bool = False, **kwargs: Any) -> Any:
        base = kwargs.get("form") or self.form
        # A new row needs no reason (creating it says what it is for); a change does.
        attrs = {REASON: _reason_field(required=obj is not None)}
        kwargs["form"] = type(f"Audited{base.__name__}", (base,), attrs)
        return super().get_form(request, obj, change=change, **kwargs)

    def get_fieldsets(self, request: HttpRequest, obj: M | None = None) -> Any:
        fieldsets = list(super().get_fieldsets(request, obj))
        shown = flatten_fieldsets(fieldsets)
        if not self._can_write(request, obj):  # view only: nothing to explain
            return [(name, {**opts, "fields": [f for f in opts["fields"] if f != REASON]}) for name, opts in fieldsets]
        if REASON not in shown:
            fieldsets.append((None, {"fields": [REASON]}))
        return fieldsets

    def get_fields(self, request: HttpRequest, obj: M | None = None) -> Any:
        fields = [f for f in super().get_fields(request, obj) if f != REASON]
        return [*fields, REASON] if self._can_write(request, obj) else fields

    def save_model(self, request: HttpRequest, obj: M, form: ModelForm[M], change: bool) -> None:
        before = {name: form.initial.get(name) for name in form.changed_data if name != REASON}
        super().save_model(request, obj, form, change)
        reason = (form.cleaned_data.get(REASON) if REASON in form.fields else "") or _posted_reason(request)
        self.audit(request, "change" if change else "add", obj, reason or "created", self._changes(form, before))

    def _changes(self, form: ModelForm[M], before: dict[str, Any]) -> dict[str, Any]:
        changes = {}
        for name, old in before.items():
            new = form.cleaned_data.get(name)
            secret = name in self.audit_secret_fields
            changes[name] = [SECRET, SECRET] if secret else [plain(old), plain(new)]
        return changes

    def audit(self, request: HttpRequest, action: str, obj: M, reason: str, changes: Any = None, **kw: Any) -> None:
        audit_record(actor=request.user, action=action, target=obj, reason=reason, changes=changes, **kw)

    # --- list_editable: one reason for the rows saved together ----------------------------

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
        extra_context = {**(extra_context or {}), "audit_reason_field": REASON, "audit_reason_help": REASON_HELP}
        if request.method == "POST" and "_save" in request.POST and self.list_editable and not _posted_reason(request):
            messages.error(request, "Say why: a reason is required to save changes in the list.")
            return HttpResponseRedirect(request.get_full_path())
        return super().changelist_view(request, extra_context)

    # --- deletes ----------------------------------------------------------------------------

    def delete_view(
        self, request: HttpRequest, object_id: str, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        extra_context = {**(extra_context or {}), "reason_form": ReasonForm(request.POST or None)}
        if request.method == "POST" and not _posted_reason(request):
            messages.error(request, "Say why: a reason is required to delete.")
            return HttpResponseRedirect(request.get_full_path())
        return super().delete_view(request, object_id, extra_context)

    def delete_model(self, request: HttpRequest, obj: M) -> None:
        with transaction.atomic():
            pk = obj.pk
            super().delete_model(request, obj)
            self.audit(request, "delete", obj, _posted_reason(request), target_id=pk)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[M]) -> None:
        with transaction.atomic():
            rows = list(queryset)
            super().delete_queryset(request, queryset)
            for obj in rows:
                self.audit(request, "delete", obj, _posted_reason(request), target_id=obj.pk)

    def get_actions(self, request: HttpRequest) -> dict[str, Any]:
        actions = super().get_actions(request)
        if "delete_selected" in actions:
            _, name, description = actions["delete_selected"]  # type: ignore[misc]
            actions["delete_selected"] = (_audited_delete_selected, name, description)
        return actions


def _audited_delete_selected(modeladmin: Any, request: HttpRequest, queryset: QuerySet[Any]) -> Any:
    """Django's delete_selected, asking why: without a reason, the confirmation page again."""
    if request.POST.get("post") and not _posted_reason(request):
        messages.error(request, "Say why: a reason is required to delete.")
        again = request.POST.copy()
        del again["post"]
        request.POST = again  # type: ignore[assignment]
    return delete_selected(modeladmin, request, queryset)


def reason_confirmation(
    modeladmin: admin.ModelAdmin[Any],
    request: HttpRequest,
    queryset: QuerySet[Any],
    *,
    title: str,
    act: Callable[[str], str],
    form: forms.Form | None = None,
    template: str = "admin/audit/action_confirmation.html",
) -> HttpResponse | None:
    """An admin action that asks why first. On the confirmed POST (`apply`) with a reason,
    `act(reason)` runs and its answer is shown as a message; otherwise the confirmation page
    lists the selected rows with the reason field (and the errors, if it was empty)."""
    posted = "apply" in request.POST
    reason_form = form if form is not None else ReasonForm(request.POST if posted else None)
    if posted and reason_form.is_valid():
        modeladmin.message_user(request, act(reason_form.cleaned_data[REASON]), messages.SUCCESS)
        return None
    context = {
        **modeladmin.admin_site.each_context(request),
        "title": title,
        "objects": queryset,
        "form": reason_form,
        "action": request.POST.get("action", ""),
        "opts": modeladmin.model._meta,
        "action_checkbox_name": ACTION_CHECKBOX_NAME,
    }
    return TemplateResponse(request, template, context)


@admin.register(AuditEntry)
class AuditEntryAdmin(admin.ModelAdmin[AuditEntry]):
    """Read-only: the log is written by the changes it records, never edited."""

    list_display = ("created_at", "actor_name", "action", "target_type", "target_repr", "reason")
    list_filter = ("action", "target_type")
    search_fields = ("actor_name", "target_repr", "target_id", "reason")
    date_hierarchy = "created_at"
    readonly_fields = [f.name for f in AuditEntry._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: AuditEntry | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: AuditEntry | None = None) -> bool:
        return False
