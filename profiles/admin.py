"""Admin for profiles and identity settings. Staff operations on the graph (split, remove
an identifier, merge) call `profiles.services.identity_ops`, like any other caller."""

from __future__ import annotations

from datetime import datetime, time, timedelta
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.safestring import mark_safe

from audit.admin import REASON, AuditedModelAdmin
from profiles.admin_list import EstimatedCountPaginator, HasEmailFilter, LastSeenFilter, ProfileChangeList
from profiles.models import Event, IdentityConfig, IdentityKind, Profile
from profiles.page_sections import profile_sections
from profiles.profile_page import TimelineFilter, profile_page, profile_timeline
from profiles.selectors import Explanation, profile_explain, profile_search
from profiles.services.identity_ops import IdentityOperationError, identity_remove, profile_merge, profile_split
from profiles.services.privacy import profile_delete
from profiles.sources import source_names
from profiles.timeline import BadCursor, Cursor

# Events per timeline page: a screenful grouped by day, one index range scan of 51 rows.
TIMELINE_PAGE = 50


def _with_cursor(request: HttpRequest, cursor: Cursor | None) -> str:
    """This page's URL with the same filters and another cursor (None: the newest events)."""
    query = request.GET.copy()
    query.pop("cursor", None)
    if cursor is not None:
        query["cursor"] = cursor.encode()
    return f"{request.path}?{query.urlencode()}#timeline"


class ReasonForm(forms.Form):
    reason = forms.CharField(widget=forms.Textarea(attrs={"rows": 2, "cols": 60}), help_text="Kept in the audit log.")


class MergeForm(ReasonForm):
    override = forms.BooleanField(required=False, help_text="Merge even if it breaks a limit, a cap or a split.")


class TimelineForm(forms.Form):
    """The timeline's filters and page cursor, from the query string."""

    type = forms.MultipleChoiceField(choices=Event.Type.choices, required=False, widget=forms.CheckboxSelectMultiple)
    event = forms.CharField(required=False, max_length=500, label="Event name",
                            help_text="One name, or several separated by commas.")  # fmt: skip
    start = forms.DateField(required=False, label="From", widget=forms.DateInput(attrs={"type": "date"}))
    end = forms.DateField(required=False, label="To", widget=forms.DateInput(attrs={"type": "date"}))
    cursor = forms.CharField(required=False, widget=forms.HiddenInput)

    def clean_cursor(self) -> Cursor | None:
        text = self.cleaned_data["cursor"]
        if not text:
            return None
        try:
            return Cursor.decode(text)
        except BadCursor:
            raise forms.ValidationError("This page link is not valid; start again from the newest events.") from None

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if data.get("start") and data.get("end") and data["start"] > data["end"]:
            raise forms.ValidationError("The start date is after the end date.")
        return data

    def filters(self) -> TimelineFilter:
        data, tz = self.cleaned_data, timezone.get_current_timezone()
        names = tuple(n.strip() for n in (data.get("event") or "").split(",") if n.strip())
        start = datetime.combine(data["start"], time.min, tz) if data.get("start") else None
        end = datetime.combine(data["end"] + timedelta(days=1), time.min, tz) if data.get("end") else None
        return TimelineFilter(types=tuple(data.get("type") or ()), names=names, start=start, end=end)


@admin.register(Profile)
class ProfileAdmin(AuditedModelAdmin[Profile]):
    """The list finds people fast on millions of profiles: the search is `profile_search`
    (trigram indexes), filters and the last-seen order use indexes, nothing is counted past
    10,000 rows (`EstimatedCountPaginator`), and each row reads only its own columns. The
    change view is the read-only profile page with the event timeline."""

    list_display = ("key", "display_name", "email", "last_seen_at", "first_seen_at", "merge_count")
    list_filter = (LastSeenFilter, HasEmailFilter)
    search_fields = ("key",)  # shows the search box; `get_search_results` does the searching
    search_help_text = "Any identifier (user id, email, anonymous id, use_…), part of an email, or a trait value."
    ordering = ("-last_seen_at",)
    paginator = EstimatedCountPaginator
    list_per_page = 50
    show_full_result_count = False
    actions = ["merge_selected"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def get_changelist(self, request: HttpRequest, **kwargs: Any) -> type[ProfileChangeList]:
        return ProfileChangeList

    def get_queryset(self, request: HttpRequest) -> QuerySet[Profile]:
        """Live profiles: a merged-away one is a tombstone, reached through its winner."""
        return super().get_queryset(request).filter(merged_into__isnull=True)

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Profile], search_term: str
    ) -> tuple[QuerySet[Profile], bool]:
        if not search_term.strip():
            return queryset, False
        return queryset.filter(id__in=profile_search(query=search_term).values("id")), False

    def delete_model(self, request: HttpRequest, obj: Profile) -> None:
        profile_delete(profile_id=obj.pk, actor=request.user, reason=request.POST.get(REASON, ""))

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Profile]) -> None:
        for pk in list(queryset.values_list("pk", flat=True)):
            profile_delete(profile_id=pk, actor=request.user, reason=request.POST.get(REASON, ""))

    @admin.display(description="Name")
    def display_name(self, obj: Profile) -> str:
        traits = obj.traits or {}
        full = " ".join(str(traits[k]) for k in ("firstName", "lastName") if traits.get(k))
        return str(traits.get("name") or full or "")

    @admin.display(description="Email")
    def email(self, obj: Profile) -> str:
        return str((obj.traits or {}).get("email") or "")

    def get_urls(self) -> list[URLPattern]:
        view = self.admin_site.admin_view(self.identity_view)
        return [path("<int:pk>/identity/", view, name="profiles_identity_view"), *super().get_urls()]

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        """The profile page: header, traits, identity graph, the timeline, identifiers and
        history. Read-only; the split and remove forms post to the identity view."""
        if not self.has_view_or_change_permission(request):
            raise PermissionDenied
        try:
            page = profile_page(profile_id=int(object_id))
        except (ValueError, Profile.DoesNotExist):
            raise Http404(f"No profile with id {object_id!r}.") from None
        live = page.profile
        if page.explanation.requested.pk != live.pk:
            messages.info(request, f"{page.explanation.requested.key} was merged into {live.key}.")
            url = reverse("admin:profiles_profile_change", args=[live.pk])
            return HttpResponseRedirect(f"{url}?{request.GET.urlencode()}" if request.GET else url)
        form = TimelineForm(request.GET)
        timeline = None
        if form.is_valid():
            timeline = profile_timeline(
                profile_id=live.pk,
                merges=page.explanation.merges,
                merge_keys=page.merge_keys,
                filters=form.filters(),
                after=form.cleaned_data["cursor"],
                limit=TIMELINE_PAGE,
                tz=timezone.get_current_timezone(),
            )
        context = {
            **self.admin_site.each_context(request),
            "title": page.name or page.email or live.key,
            "sections": profile_sections(request, live.pk),  # audiences, and what else the floors above add
            "page": page,
            "x": page.explanation,
            "source_names": _source_names(page.explanation),
            "svg": mark_safe(page.graph.svg),  # built from escaped text (graph_svg)
            "form": form,
            "timeline": timeline,
            "newer_url": _with_cursor(request, None) if form.is_valid() and form.cleaned_data["cursor"] else None,
            "older_url": _with_cursor(request, timeline.next_cursor) if timeline and timeline.next_cursor else None,
            "filtered": form.is_valid() and any(form.cleaned_data.get(k) for k in ("type", "event", "start", "end")),
            "tz_name": timezone.get_current_timezone_name(),
            "reason_form": ReasonForm(),
            "can_change": self.has_change_permission(request, live),
            "can_view_computed": request.user.has_perm("profiles.view_computedtrait")
            or request.user.has_perm("profiles.change_computedtrait"),
            "next": request.get_full_path(),
            "opts": self.model._meta,
            "original": live,
        }
        return TemplateResponse(
            request, "admin/profiles/profile/profile_page.html", context, status=200 if form.is_valid() else 400
        )

    def identity_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        """The explanation of a profile, with the split and remove forms (also embedded in
        the profile page, which posts here with `next` to come back to)."""
        if not self.has_view_or_change_permission(request):
            raise PermissionDenied
        get_object_or_404(Profile, pk=pk)
        if request.method == "POST":
            if not self.has_change_permission(request):
                raise PermissionDenied
            form = ReasonForm(request.POST)
            if form.is_valid():
                try:
                    self._act(request, pk, form.cleaned_data["reason"])
                except IdentityOperationError as exc:
                    messages.error(request, str(exc))
            else:
                messages.error(request, "Say why: a reason is required.")
            back = request.POST.get("next", "")
            safe = url_has_allowed_host_and_scheme(back, allowed_hosts={request.get_host()})
            return HttpResponseRedirect(back if back and safe else request.path)
        explanation = profile_explain(profile_id=pk)
        context = {
            **self.admin_site.each_context(request),
            "title": f"Identity of {explanation.profile.key}",
            "x": explanation,
            "source_names": _source_names(explanation),
            "reason_form": ReasonForm(),
            "can_change": self.has_change_permission(request),
            "next": "",
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

    @admin.action(description="Merge the selected profiles", permissions=["change"])
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
class IdentityKindAdmin(AuditedModelAdmin[IdentityKind]):
    change_list_template = "admin/audit/change_list_editable.html"
    list_display = ("kind", "priority", "limit", "window", "read_from", "key", "auto_created")
    list_filter = ("auto_created",)
    list_editable = ("priority", "limit", "window")
    search_fields = ("kind",)


@admin.register(IdentityConfig)
class IdentityConfigAdmin(AuditedModelAdmin[IdentityConfig]):
    list_display = ("__str__", "max_merges", "max_identities", "alias_merges", "auto_kinds")
    readonly_fields = ("auto_kinds",)

    @admin.display(description="Kinds added by messages")
    def auto_kinds(self, obj: IdentityConfig) -> str:
        used = IdentityKind.objects.filter(auto_created=True).count()
        full = (
            " (the cap is reached: identifiers of new kinds are not used for matching)"
            if used >= obj.max_auto_kinds
            else ""
        )
        return f"{used} of {obj.max_auto_kinds}{full}"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return super().has_add_permission(request) and not IdentityConfig.objects.exists()

    def has_delete_permission(self, request: HttpRequest, obj: IdentityConfig | None = None) -> bool:
        return False


def _source_names(x: Explanation) -> dict[int, str]:
    """Names of the sources that set the profile's traits and brought its identifiers."""
    meta = x.profile.trait_meta or {}
    traits = (m.get("source_id") for m in meta.values() if isinstance(m, dict))
    return source_names([*traits, *(i.source_id for i in x.identities)])
