"""Admin for profiles and identity settings. Staff operations on the graph (split, remove
an identifier, merge) call `profiles.services.identity_ops`, like any other caller."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html

from profiles.models import IdentityConfig, IdentityKind, Profile
from profiles.selectors import profile_explain
from profiles.services.identity_ops import IdentityOperationError, identity_remove, profile_merge, profile_split


class ReasonForm(forms.Form):
    reason = forms.CharField(widget=forms.Textarea(attrs={"rows": 2, "cols": 60}), help_text="Kept in the audit log.")


class MergeForm(ReasonForm):
    override = forms.BooleanField(required=False, help_text="Merge even if it breaks a limit, a cap or a split.")


@admin.register(Profile)
class ProfileAdmin(admin.ModelAdmin[Profile]):
    list_display = ("key", "display_name", "last_seen_at", "merge_count", "merged_into")
    search_fields = ("key", "identities__value")
    list_filter = (("merged_into", admin.EmptyFieldListFilter),)
    readonly_fields = ("key", "created_at", "updated_at", "first_seen_at", "last_seen_at", "traits", "trait_meta",
                       "merge_count", "merged_into", "identity_graph_link")  # fmt: skip
    actions = ["merge_selected"]
    show_full_result_count = False

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    @admin.display(description="Name / email")
    def display_name(self, obj: Profile) -> str:
        traits = obj.traits or {}
        return str(traits.get("name") or traits.get("email") or "")

    @admin.display(description="Identity")
    def identity_graph_link(self, obj: Profile) -> str:
        return format_html('<a href="{}">identifiers, merges, split…</a>', reverse("admin:profiles_identity_view",
                                                                                     args=[obj.pk]))  # fmt: skip

    def get_urls(self) -> list[URLPattern]:
        view = self.admin_site.admin_view(self.identity_view)
        return [path("<int:pk>/identity/", view, name="profiles_identity_view"), *super().get_urls()]

    def identity_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        """The explanation of a profile, with the split and remove forms."""
        get_object_or_404(Profile, pk=pk)
        if request.method == "POST" and self.has_change_permission(request):
            form = ReasonForm(request.POST)
            if form.is_valid():
                try:
                    self._act(request, pk, form.cleaned_data["reason"])
                except IdentityOperationError as exc:
                    messages.error(request, str(exc))
                return HttpResponseRedirect(request.path)
            messages.error(request, "Say why: a reason is required.")
        explanation = profile_explain(profile_id=pk)
        context = {
            **self.admin_site.each_context(request),
            "title": f"Identity of {explanation.profile.key}",
            "x": explanation,
            "form": ReasonForm(),
            "opts": self.model._meta,
        }
        return TemplateResponse(request, "admin/profiles/profile/identity.html", context)

    def _act(self, request: HttpRequest, pk: int, reason: str) -> None:
        actor = request.user if request.user.is_authenticated else None
        if "remove" in request.POST:
            kind, _, value = request.POST["remove"].partition(":")
            identity_remove(profile_id=pk, kind=kind, value=value, actor=actor, reason=reason)
            messages.success(request, f"Removed {kind}:{value}.")
        else:
            picked = [(k, v) for k, _, v in (item.partition(":") for item in request.POST.getlist("identifier"))]
            result = profile_split(profile_id=pk, identifiers=picked, actor=actor, reason=reason)
            messages.success(
                request, f"Split into {len(result.profile_ids)} profiles; {result.events_moved} events moved."
            )

    @admin.action(description="Merge the selected profiles")
    def merge_selected(self, request: HttpRequest, queryset: QuerySet[Profile]) -> HttpResponse | None:
        if "apply" in request.POST:
            form = MergeForm(request.POST)
            if form.is_valid():
                try:
                    winner = profile_merge(
                        profile_ids=list(queryset.values_list("pk", flat=True)),
                        actor=request.user,  # type: ignore[arg-type]
                        reason=form.cleaned_data["reason"],
                        override=form.cleaned_data["override"],
                    )
                except IdentityOperationError as exc:
                    self.message_user(request, str(exc), messages.ERROR)
                    return None
                self.message_user(request, f"Merged into {winner.key}.", messages.SUCCESS)
                return None
        else:
            form = MergeForm()
        context: dict[str, Any] = {
            **self.admin_site.each_context(request),
            "title": "Merge profiles",
            "profiles": queryset,
            "form": form,
            "opts": self.model._meta,
            "action_checkbox_name": ACTION_CHECKBOX_NAME,
        }
        return TemplateResponse(request, "admin/profiles/profile/merge.html", context)


@admin.register(IdentityKind)
class IdentityKindAdmin(admin.ModelAdmin[IdentityKind]):
    list_display = ("kind", "priority", "limit", "window", "read_from", "key")
    list_editable = ("priority", "limit", "window")
    search_fields = ("kind",)


@admin.register(IdentityConfig)
class IdentityConfigAdmin(admin.ModelAdmin[IdentityConfig]):
    list_display = ("__str__", "max_merges", "max_identities", "alias_merges")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return not IdentityConfig.objects.exists()

    def has_delete_permission(self, request: HttpRequest, obj: IdentityConfig | None = None) -> bool:
        return False
