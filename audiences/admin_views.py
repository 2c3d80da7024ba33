"""The audience admin's own pages (`AudienceAdmin.get_urls`): the audience page, and the JSON
endpoints of the builder (preview, the properties seen on an event, a Segment query read into
a rule). Each parses input, calls one selector or service, and shapes the answer."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from datetime import time as day_time
from typing import TYPE_CHECKING, Any

from django import forms
from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.db import DatabaseError
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed, HttpResponseRedirect, JsonResponse
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone

from audiences.catalog import event_property_catalog
from audiences.charts import size_svg
from audiences.describe import rule_outline
from audiences.hooks import audience_destinations
from audiences.models import Audience
from audiences.selectors import Person, audience_days, audience_moves, members_page, people
from audiences.services import audience_preview, enqueue_compute, query_of, rule_from
from audit.services import audit_record
from profiles.query.filters import QueryError

if TYPE_CHECKING:
    from audiences.admin import AudienceAdmin

MEMBERS_PAGE = 50
HISTORY_PAGE = 50
PLOT_DAYS = 90


class MembersForm(forms.Form):
    """The members section's search, moment and page, from the query string."""

    q = forms.CharField(required=False, max_length=200, label="Search")
    on = forms.DateField(required=False, label="On", widget=forms.DateInput(attrs={"type": "date"}))
    at = forms.TimeField(required=False, label="at", widget=forms.TimeInput(attrs={"type": "time"}),
                         help_text="UTC; the end of the day if left empty.")  # fmt: skip
    after = forms.IntegerField(required=False, min_value=0, widget=forms.HiddenInput)
    before = forms.CharField(required=False, max_length=80, widget=forms.HiddenInput)  # the history's page

    def moment(self) -> datetime | None:
        day = self.cleaned_data.get("on")
        if day is None:
            return None
        at = datetime.combine(day, self.cleaned_data.get("at") or day_time.max, tzinfo=UTC)
        return None if at >= timezone.now() else at


def _link(request: HttpRequest, pk: int) -> str | None:
    if request.user.has_perm("profiles.view_profile"):
        return reverse("admin:profiles_profile_change", args=[pk])
    return None


def _who(request: HttpRequest, found: dict[int | str, Person], pk: int) -> tuple[Person, str | None]:
    """The person and their profile page's URL; a profile deleted since keeps its stays, and
    shows without a link."""
    person = found.get(pk)
    return (person, _link(request, pk)) if person else (Person(pk, "", "", ""), None)


def audience_page(request: HttpRequest, pk: int, model_admin: AudienceAdmin) -> HttpResponse:
    """Status, size now and over time, members (searchable, paged, now or at a moment),
    history of entries and exits, the destinations it syncs to."""
    if not model_admin.has_view_or_change_permission(request):
        raise PermissionDenied
    audience = get_object_or_404(Audience, pk=pk)
    form = MembersForm(request.GET)
    valid = form.is_valid()
    data = form.cleaned_data if valid else {}
    at = form.moment() if valid else None
    rows = members_page(audience_id=pk, at=at, search=data.get("q") or "", after=data.get("after") or 0,
                        limit=MEMBERS_PAGE + 1)  # fmt: skip
    more, rows = len(rows) > MEMBERS_PAGE, rows[:MEMBERS_PAGE]
    history = audience_moves(audience_id=pk, before=data.get("before") or None, limit=HISTORY_PAGE + 1)
    older, history = len(history) > HISTORY_PAGE, history[:HISTORY_PAGE]
    who = people(ids=[r.profile_id for r in rows] + [h.profile_id for h in history])
    days = audience_days(audience_id=pk, days=PLOT_DAYS)

    def page_url(**change: Any) -> str:
        query = request.GET.copy()
        for k, v in change.items():
            query.pop(k, None)
            if v is not None:
                query[k] = str(v)
        return f"{request.path}?{query.urlencode()}"

    context = {
        **model_admin.admin_site.each_context(request),
        "title": audience.name,
        "audience": audience,
        "opts": Audience._meta,
        "original": audience,
        "outline": rule_outline(audience.rule),
        "query": query_of(audience.rule),
        "chart": size_svg(days),
        "days": days,
        "form": form,
        "at": at,
        "members": [(r, *_who(request, who, r.profile_id)) for r in rows],
        "next_members": page_url(after=rows[-1].profile_id) + "#members" if more and rows else None,
        "first_members": page_url(after=None) + "#members" if data.get("after") else None,
        "history": [(h, *_who(request, who, h.profile_id)) for h in history],
        "older_history": page_url(before=history[-1].cursor) + "#history" if older and history else None,
        "newest_history": page_url(before=None) + "#history" if data.get("before") else None,
        "destinations": audience_destinations(pk),
        "can_change": model_admin.has_change_permission(request, audience),
        "can_compute": request.user.has_perm("audiences.compute_audience"),
    }
    return TemplateResponse(request, "admin/audiences/audience/page.html", context)


def audience_compute_now(request: HttpRequest, pk: int, model_admin: AudienceAdmin) -> HttpResponse:
    """POST: recompute over all history now (a task), recorded in the audit log."""
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    if not request.user.has_perm("audiences.compute_audience"):
        raise PermissionDenied
    audience = get_object_or_404(Audience, pk=pk)
    audit_record(actor=request.user, action="compute", target=audience, reason="recompute requested in the admin")
    enqueue_compute(audience_id=audience.pk, cause=f"recompute (v{audience.version})")
    messages.success(request, f"{audience.name}: a recomputation over all history is queued.")
    return HttpResponseRedirect(reverse("admin:audiences_audience_page", args=[pk]))


def _body(request: HttpRequest) -> dict[str, Any]:
    try:
        body = json.loads(request.body or b"{}")
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise QueryError("$", "The body is a JSON object.")
    return body


def _error(exc: QueryError, status: int = 400) -> JsonResponse:
    return JsonResponse({"error": {"path": exc.path, "message": exc.message}}, status=status)


def preview(request: HttpRequest, model_admin: AudienceAdmin) -> HttpResponse:
    """POST {"rule", "include_anonymous", "key"}: the size, each node's count by its JSON
    path, a sample of people (linking to their profile pages) and the Segment query text.
    Writes nothing; 400 names the bad node."""
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    model_admin.may_read(request)
    started = time.monotonic()
    try:
        body = _body(request)
        data = {k: body[k] for k in ("rule", "include_anonymous", "key") if body.get(k) is not None}
        result = audience_preview(data=data)
    except QueryError as exc:
        return _error(exc)
    except DatabaseError:
        return JsonResponse({"error": {"message": "The preview took too long (or the database is away): try again, "
                                       "or narrow the rule."}}, status=503)  # fmt: skip
    who = people(keys=result.sample)
    sample = [who[k] for k in result.sample if k in who]
    return JsonResponse({
        "size": result.size,
        "conditions": dict(result.conditions),
        "sample": [{"key": p.key, "label": p.label, "url": _link(request, p.id)} for p in sample],
        "query": query_of(data["rule"]) if "rule" in data else None,
        "ms": round((time.monotonic() - started) * 1000),
    })  # fmt: skip


def properties(request: HttpRequest, model_admin: AudienceAdmin) -> HttpResponse:
    """GET ?event=: the properties seen on that event's newest events, with types and values."""
    model_admin.may_read(request)
    event = request.GET.get("event", "")[:200]
    found = event_property_catalog(event=event) if event else []
    return JsonResponse({"properties": [{"path": s.path, "count": s.count, "type": s.type, "examples": s.examples}
                                        for s in found]})  # fmt: skip


def query(request: HttpRequest, model_admin: AudienceAdmin) -> HttpResponse:
    """POST {"query"}: Segment's audience query read into a rule tree (or where it fails)."""
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    model_admin.may_read(request)
    try:
        text = _body(request).get("query") or ""
        if not isinstance(text, str) or not text.strip():
            raise QueryError("query", "Paste a query first.")
        return JsonResponse({"rule": rule_from({"query": text}).rule})
    except QueryError as exc:
        return _error(exc)
