"""`/api/v1/audiences`: define audiences (a rule tree, or Segment's query language), preview
an unsaved rule, read members now or at any past moment, their history and sizes, start a
computation. Writing needs a token made with `--write`; errors name the bad field or node."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import exceptions, serializers
from rest_framework.request import Request
from rest_framework.response import Response

from audiences.models import Audience
from audiences.selectors import audience_history, audience_sizes, members_at
from audiences.services import (
    FIELDS,
    audience_create,
    audience_delete,
    audience_preview,
    audience_update,
    enqueue_compute,
    query_of,
)
from profiles.api import schemas
from profiles.api.base import ApiView
from profiles.api.schemas import StrictBooleanField, StrictCharField, StrictIntegerField
from profiles.query.filters import QueryError, parse_date

TAG = "Audiences"
KEY = OpenApiParameter("key", str, OpenApiParameter.PATH, description="The audience's key, e.g. `cart_abandoned`.")


class AudienceIn(serializers.Serializer):
    key = serializers.RegexField(r"^[a-z][a-z0-9]*(_[a-z0-9]+)*$", max_length=64, help_text="snake_case, fixed.")
    name = StrictCharField(required=False, max_length=200)
    description = StrictCharField(required=False, allow_blank=True, max_length=5000)
    rule = serializers.JSONField(required=False, allow_null=True, help_text="The rule tree (see the README).")
    query = StrictCharField(required=False, allow_null=True, allow_blank=True,
                            help_text="Instead of rule: Segment's audience query language.")  # fmt: skip
    include_anonymous = StrictBooleanField(required=False, help_text="Fixed once created; default false.")
    enabled = StrictBooleanField(required=False)
    schedule_minutes = StrictIntegerField(
        required=False, min_value=1, max_value=10080, help_text="How often a time-dependent audience is recomputed; 15."
    )


class AudienceOut(serializers.Serializer):
    key = StrictCharField()
    name = StrictCharField()
    description = StrictCharField()
    rule = serializers.JSONField()
    query = StrictCharField(allow_null=True, help_text="The rule in the query language, when it can be written so.")
    include_anonymous = StrictBooleanField()
    enabled = StrictBooleanField()
    schedule_minutes = StrictIntegerField()
    status = serializers.ChoiceField(choices=[c for c, _ in Audience.Status.choices])
    last_error = StrictCharField()
    version = StrictIntegerField()
    size = StrictIntegerField()
    time_dependent = StrictBooleanField()
    last_computed_at = serializers.DateTimeField(allow_null=True)
    last_duration_ms = StrictIntegerField(allow_null=True)
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()


class AudienceList(serializers.Serializer):
    results = AudienceOut(many=True)


class PreviewIn(serializers.Serializer):
    rule = serializers.JSONField(required=False, allow_null=True)
    query = StrictCharField(required=False, allow_null=True, allow_blank=True)
    include_anonymous = StrictBooleanField(required=False)
    key = StrictCharField(required=False, help_text="The audience being edited, if any (for the cycle check).")


class SampleOut(serializers.Serializer):
    id = StrictCharField()


class ConditionOut(serializers.Serializer):
    path = StrictCharField(help_text="The node's JSON path in the rule, `$` for the whole.")
    size = StrictIntegerField(help_text="How many profiles this node alone admits.")


class PreviewOut(serializers.Serializer):
    size = StrictIntegerField()
    sample = SampleOut(many=True)
    conditions = ConditionOut(many=True)


class MemberOut(serializers.Serializer):
    id = StrictCharField()
    entered_at = serializers.DateTimeField()


class CursorOut(serializers.Serializer):
    next = StrictCharField(allow_null=True)
    has_more = StrictBooleanField()


class MembersOut(serializers.Serializer):
    data = MemberOut(many=True)
    cursor = CursorOut()


class MembersQuery(serializers.Serializer):
    at = StrictCharField(required=False, help_text="ISO 8601: the members at that moment (default: now).")
    limit = serializers.IntegerField(required=False, min_value=1, max_value=1000, default=100)
    next = serializers.RegexField(r"^[0-9]{1,19}$", required=False, help_text="The cursor of the previous page.")


class StayOut(serializers.Serializer):
    id = StrictCharField(help_text="The profile.")
    entered_at = serializers.DateTimeField()
    entry_cause = StrictCharField()
    exited_at = serializers.DateTimeField(allow_null=True)
    exit_cause = StrictCharField()


class HistoryOut(serializers.Serializer):
    data = StayOut(many=True)
    cursor = CursorOut()


class HistoryQuery(serializers.Serializer):
    limit = serializers.IntegerField(required=False, min_value=1, max_value=1000, default=100)
    next = serializers.RegexField(r"^[0-9]{1,19}$", required=False)


class SizesQuery(serializers.Serializer):
    days = serializers.IntegerField(required=False, min_value=1, max_value=1095, default=90)


class SizeOut(serializers.Serializer):
    date = serializers.DateField()
    size = StrictIntegerField(help_text="Members at the end of the day.")
    entered = StrictIntegerField(help_text="Stays that began that day.")
    exited = StrictIntegerField(help_text="Stays that ended that day.")


class SizesOut(serializers.Serializer):
    data = SizeOut(many=True)


class Accepted(serializers.Serializer):
    key = StrictCharField()
    status = StrictCharField()


OPENED_NOT_BOUGHT = {
    "key": "opened_not_bought", "name": "Opened, neither bought nor visited",
    "rule": {"all": [
        {"event": "Email Opened", "where": [{"property": "machine_open", "op": "!=", "value": True}],
         "window": {"within_days": 180}},
        {"not": {"event": "Order Completed", "window": {"within_days": 180}}},
        {"not": {"event": "Page Viewed", "window": {"within_days": 180}}}]},
}  # fmt: skip
CART_ABANDONED = {
    "key": "cart_abandoned", "name": "Cart abandoned",
    "rule": {"event": "Product Added", "then": [{"event": "Order Completed", "within_hours": 24, "did": False}]},
}  # fmt: skip
BY_QUERY = {
    "key": "frequent_visitors", "name": "Frequent visitors",
    "query": "event('Page Viewed').within(30 days).count() >= 5",
}  # fmt: skip
WRITE_ERRORS = {
    400: OpenApiResponse(schemas.Error, description="A bad rule: the message names the node, e.g. "
                         "`rule.all[0].where[0].op: Unknown operator …`, or `… would create a cycle`."),
    403: OpenApiResponse(schemas.Error, description="A read-only token (make one with `create_access_token --write`)."),
}  # fmt: skip


def shape(a: Audience) -> dict[str, Any]:
    return {
        "key": a.key, "name": a.name, "description": a.description, "rule": a.rule,
        "query": a.query or query_of(a.rule), "include_anonymous": a.include_anonymous, "enabled": a.enabled,
        "schedule_minutes": a.schedule_minutes, "status": a.status, "last_error": a.last_error,
        "version": a.version, "size": a.size, "time_dependent": a.time_dependent,
        "last_computed_at": a.last_computed_at, "last_duration_ms": a.last_duration_ms,
        "created_at": a.created_at, "updated_at": a.updated_at,
    }  # fmt: skip


def _body(request: Request, serializer: type[serializers.Serializer], *, partial: bool = False) -> dict[str, Any]:
    if not isinstance(request.data, dict):
        raise exceptions.ValidationError("The body is a JSON object.")
    if unknown := sorted(set(request.data) - set(serializer().fields)):
        raise exceptions.ValidationError({name[:40]: "Unknown field." for name in unknown[:5]})
    serializer(data=request.data, partial=partial).is_valid(raise_exception=True)
    return dict(request.data)


def _invalid(exc: QueryError) -> exceptions.ValidationError:
    return exceptions.ValidationError(f"{exc.path}: {exc.message}")


def _audience(key: str) -> Audience:
    audience = Audience.objects.filter(key=key).first()
    if audience is None:
        raise exceptions.NotFound(f"There is no audience {key!r}.")
    return audience


def _query(serializer: type[serializers.Serializer], request: Request) -> dict[str, Any]:
    unknown = sorted(set(request.query_params) - set(serializer().fields))
    if unknown:
        raise exceptions.ValidationError({unknown[0][:40]: "Unknown parameter."})
    s = serializer(data=request.query_params.dict())
    s.is_valid(raise_exception=True)
    return dict(s.validated_data)


class AudiencesView(ApiView):
    @extend_schema(tags=[TAG], summary="Audiences", responses={200: AudienceList, **schemas.errors(401, 429)})
    def get(self, request: Request) -> Response:
        return Response({"results": [shape(a) for a in Audience.objects.order_by("key")]})

    @extend_schema(
        tags=[TAG], summary="Define an audience", request=AudienceIn,
        description="With `rule` (the tree) or `query` (Segment's language). It is computed over all history right "
        "after (status `preparing`, `computing`, then `live`), then kept current in real time.",
        examples=[OpenApiExample("opened, neither bought nor visited", value=OPENED_NOT_BOUGHT, request_only=True),
                  OpenApiExample("cart abandonment (a funnel)", value=CART_ABANDONED, request_only=True),
                  OpenApiExample("in the query language", value=BY_QUERY, request_only=True)],
        responses={201: AudienceOut, **schemas.errors(401, 429), **WRITE_ERRORS},
    )  # fmt: skip
    def post(self, request: Request) -> Response:
        try:
            audience = audience_create(data=_body(request, AudienceIn), actor=request.auth,
                                       reason="created through the API")  # fmt: skip
        except QueryError as exc:
            raise _invalid(exc) from None
        return Response(shape(audience), status=201)


class AudienceView(ApiView):
    @extend_schema(tags=[TAG], summary="An audience", parameters=[KEY],
                   responses={200: AudienceOut, **schemas.errors(401, 404, 429)})  # fmt: skip
    def get(self, request: Request, key: str) -> Response:
        return Response(shape(_audience(key)))

    @extend_schema(
        tags=[TAG], summary="Change an audience", parameters=[KEY], request=AudienceIn(partial=True),
        description="Only the fields given change. A new rule is a new version, computed again over all history.",
        responses={200: AudienceOut, **schemas.errors(401, 404, 429), **WRITE_ERRORS},
    )  # fmt: skip
    def patch(self, request: Request, key: str) -> Response:
        _audience(key)
        try:
            audience = audience_update(key=key, data=_body(request, AudienceIn, partial=True), actor=request.auth,
                                       reason="changed through the API")  # fmt: skip
        except QueryError as exc:
            raise _invalid(exc) from None
        return Response(shape(audience))

    @extend_schema(tags=[TAG], summary="Delete an audience", parameters=[KEY],
                   responses={204: None, **schemas.errors(401, 404, 429), **WRITE_ERRORS})  # fmt: skip
    def delete(self, request: Request, key: str) -> Response:
        _audience(key)
        try:
            audience_delete(key=key, actor=request.auth, reason="deleted through the API")
        except QueryError as exc:
            raise _invalid(exc) from None
        return Response(status=204)


class PreviewView(ApiView):
    @extend_schema(
        tags=[TAG], summary="Preview an unsaved rule", request=PreviewIn,
        description="The size, a sample of 20 members (most recently seen first) and how many profiles each node "
        "of the tree admits alone. Nothing is written.",
        examples=[OpenApiExample("a rule", value={"rule": OPENED_NOT_BOUGHT["rule"]}, request_only=True),
                  OpenApiExample("a query", value={"query": BY_QUERY["query"]}, request_only=True)],
        responses={200: PreviewOut, **schemas.errors(401, 429), **WRITE_ERRORS},
    )  # fmt: skip
    def post(self, request: Request) -> Response:
        try:
            preview = audience_preview(data=_body(request, PreviewIn))
        except QueryError as exc:
            raise _invalid(exc) from None
        return Response({
            "size": preview.size, "sample": [{"id": key} for key in preview.sample],
            "conditions": [{"path": path, "size": size} for path, size in preview.conditions],
        })  # fmt: skip


class MembersView(ApiView):
    @extend_schema(
        tags=[TAG], summary="An audience's members, now or at a past moment", parameters=[KEY, MembersQuery],
        responses={200: MembersOut, **schemas.errors(400, 401, 404, 429)},
    )  # fmt: skip
    def get(self, request: Request, key: str) -> Response:
        audience = _audience(key)
        params = _query(MembersQuery, request)
        at: datetime | None = None
        if "at" in params:
            at = parse_date(params["at"])
            if at is None:
                raise exceptions.ValidationError({"at": "An ISO 8601 date or time, e.g. 2026-11-01T00:00:00Z."})
        limit = params["limit"]
        rows = members_at(audience_id=audience.pk, at=at, after=int(params.get("next") or 0), limit=limit + 1)
        more = len(rows) > limit
        rows = rows[:limit]
        return Response({
            "data": [{"id": r.key, "entered_at": r.entered_at} for r in rows],
            "cursor": {"next": str(rows[-1].profile_id) if more else None, "has_more": more},
        })  # fmt: skip


class HistoryView(ApiView):
    @extend_schema(tags=[TAG], summary="Entries and exits, with their causes", parameters=[KEY, HistoryQuery],
                   responses={200: HistoryOut, **schemas.errors(400, 401, 404, 429)})  # fmt: skip
    def get(self, request: Request, key: str) -> Response:
        audience = _audience(key)
        params = _query(HistoryQuery, request)
        limit = params["limit"]
        before = int(params["next"]) if params.get("next") else None
        rows = audience_history(audience_id=audience.pk, before=before, limit=limit + 1)
        more = len(rows) > limit
        rows = rows[:limit]
        return Response({
            "data": [{"id": r.key, "entered_at": r.entered_at, "entry_cause": r.entry_cause, "exited_at": r.exited_at,
                      "exit_cause": r.exit_cause} for r in rows],
            "cursor": {"next": str(rows[-1].id) if more else None, "has_more": more},
        })  # fmt: skip


class SizesView(ApiView):
    @extend_schema(tags=[TAG], summary="The size at the end of each day", parameters=[KEY, SizesQuery],
                   responses={200: SizesOut, **schemas.errors(400, 401, 404, 429)})  # fmt: skip
    def get(self, request: Request, key: str) -> Response:
        audience = _audience(key)
        params = _query(SizesQuery, request)
        sizes = audience_sizes(audience_id=audience.pk, days=params["days"])
        return Response({"data": [{"date": d.date, "size": d.size, "entered": d.entered, "exited": d.exited}
                                  for d in sizes]})  # fmt: skip


class ComputeView(ApiView):
    @extend_schema(tags=[TAG], summary="Recompute an audience over all history", parameters=[KEY], request=None,
                   responses={202: Accepted, **schemas.errors(401, 404, 429), **WRITE_ERRORS})  # fmt: skip
    def post(self, request: Request, key: str) -> Response:
        audience = _audience(key)
        if not audience.enabled:
            raise exceptions.ValidationError(f"{key}: the audience is disabled; enable it first.")
        enqueue_compute(audience_id=audience.pk, cause="recomputed")
        return Response({"key": key, "status": "computing"}, status=202)


assert set(AudienceIn().fields) == set(FIELDS)
