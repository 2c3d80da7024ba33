"""`/api/v1/computed-traits`: define computed traits and scores, start a run, see how their
values are spread. Writing needs a token made with `--write`; errors name the bad field."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import exceptions, serializers
from rest_framework.request import Request
from rest_framework.response import Response

from profiles.api import schemas
from profiles.api.base import ApiView
from profiles.api.schemas import StrictBooleanField, StrictCharField, StrictFloatField, StrictIntegerField
from profiles.computed.definitions import FIELDS, TYPES
from profiles.computed.selectors import trait_distribution
from profiles.computed.services import (
    computed_trait_create,
    computed_trait_delete,
    computed_trait_recompute,
    computed_trait_update,
)
from profiles.models import ComputedTrait
from profiles.query.filters import QueryError

TAG = "Computed traits"
KEY = OpenApiParameter("key", str, OpenApiParameter.PATH, description="The trait's key, e.g. `orders_90d`.")


class FilterBody(serializers.Serializer):
    property = StrictCharField(help_text="A top-level property, dotted for a nested one.")
    op = serializers.ChoiceField(
        choices=["=", "!=", "<", "<=", ">", ">=", "one_of", "none_of", "contains", "not_contains", "starts_with",
                 "ends_with", "exists", "not_exists", "before_date", "after_date", "within_last_days",
                 "before_last_days"])  # fmt: skip
    value = serializers.JSONField(required=False, help_text="What the operator compares with (none for exists).")


class RuleBody(serializers.Serializer):
    event = StrictCharField()
    where = FilterBody(many=True, required=False)
    points = StrictFloatField()


class ComputedTraitIn(serializers.Serializer):
    key = serializers.RegexField(r"^[a-z][a-z0-9]*(_[a-z0-9]+)*$", max_length=64, help_text="snake_case, fixed.")
    name = StrictCharField(required=False, max_length=200)
    description = StrictCharField(required=False, allow_blank=True)
    type = serializers.ChoiceField(choices=list(TYPES))
    event = StrictCharField(required=False, allow_null=True, help_text="A track event, or Page Viewed / Screen Viewed.")
    property = StrictCharField(
        required=False, allow_null=True, help_text="The property read (all types but counter, score)."
    )
    where = FilterBody(many=True, required=False, allow_null=True)
    window_days = StrictIntegerField(required=False, allow_null=True, min_value=1)
    min_frequency = StrictIntegerField(required=False, allow_null=True, min_value=1, help_text="most_frequent only; 2.")
    rules = RuleBody(many=True, required=False, allow_null=True, help_text="score only.")
    half_life_days = StrictFloatField(required=False, allow_null=True, help_text="score only: decay.")
    schedule_hours = StrictIntegerField(required=False, min_value=1, max_value=720)
    enabled = StrictBooleanField(required=False)


class ComputedTraitOut(ComputedTraitIn):
    status = serializers.ChoiceField(choices=[c for c, _ in ComputedTrait.Status.choices])
    last_error = StrictCharField()
    last_computed_at = serializers.DateTimeField(allow_null=True)
    last_duration_ms = StrictIntegerField(allow_null=True)
    profiles_with_value = StrictIntegerField()
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()


class ComputedTraitList(serializers.Serializer):
    results = ComputedTraitOut(many=True)


class Accepted(serializers.Serializer):
    key = StrictCharField()
    status = StrictCharField()


class DistributionOut(serializers.Serializer):
    profiles = StrictIntegerField(help_text="Profiles with a value.")
    kind = serializers.ChoiceField(choices=["numbers", "values"])
    top = serializers.ListField(child=serializers.DictField(), help_text="[{value, profiles}], most common first.")
    histogram = serializers.ListField(child=serializers.DictField(), help_text="[{from, to, profiles}] for numbers.")
    min = StrictFloatField(allow_null=True)
    max = StrictFloatField(allow_null=True)


LEAD_SCORE = {
    "key": "lead_score", "name": "Lead score", "type": "score", "half_life_days": 30,
    "rules": [{"event": "Email Opened", "points": 1,
               "where": [{"property": "machine_open", "op": "!=", "value": True}]},
              {"event": "Email Link Clicked", "points": 3},
              {"event": "Page Viewed", "points": 5, "where": [{"property": "path", "op": "=", "value": "/pricing"}]}],
}  # fmt: skip
ORDERS = {
    "key": "orders_90d", "name": "Orders, 90 days", "type": "counter", "event": "Order Completed",
    "where": [{"property": "revenue", "op": ">", "value": 0}], "window_days": 90,
}  # fmt: skip
WRITE_ERRORS = {
    400: OpenApiResponse(schemas.Error, description="A bad definition: the message names the field, e.g. "
                         "`where[0].op: Unknown operator …`."),
    403: OpenApiResponse(schemas.Error, description="A read-only token (make one with `create_access_token --write`)."),
}  # fmt: skip


def shape(trait: ComputedTrait) -> dict[str, Any]:
    spec = trait.spec
    return {
        "key": trait.key, "name": trait.name, "description": trait.description, "type": trait.type,
        **{f: spec.get(f) for f in FIELDS if f != "type" and f in spec},
        "schedule_hours": trait.schedule_hours, "enabled": trait.enabled, "status": trait.status,
        "last_error": trait.last_error, "last_computed_at": trait.last_computed_at,
        "last_duration_ms": trait.last_duration_ms, "profiles_with_value": trait.profiles_with_value,
        "created_at": trait.created_at, "updated_at": trait.updated_at,
    }  # fmt: skip


def _body(request: Request, *, partial: bool = False) -> dict[str, Any]:
    """The body, its fields' types checked (each error names its field); the definition
    itself is checked by the service."""
    if not isinstance(request.data, dict):
        raise exceptions.ValidationError("The body is a JSON object.")
    if unknown := sorted(set(request.data) - set(ComputedTraitIn().fields)):
        raise exceptions.ValidationError({name[:40]: "Unknown field." for name in unknown[:5]})
    ComputedTraitIn(data=request.data, partial=partial).is_valid(raise_exception=True)
    return dict(request.data)


def _invalid(exc: QueryError) -> exceptions.ValidationError:
    return exceptions.ValidationError(f"{exc.path}: {exc.message}")


def _trait(key: str) -> ComputedTrait:
    trait = ComputedTrait.objects.filter(key=key).first()
    if trait is None:
        raise exceptions.NotFound(f"There is no computed trait {key!r}.")
    return trait


class ComputedTraitsView(ApiView):
    @extend_schema(tags=[TAG], summary="Computed traits", responses={200: ComputedTraitList,
                                                                      **schemas.errors(401, 429)})  # fmt: skip
    def get(self, request: Request) -> Response:
        return Response({"results": [shape(t) for t in ComputedTrait.objects.order_by("key")]})

    @extend_schema(
        tags=[TAG], summary="Define a computed trait or score", request=ComputedTraitIn,
        description="Its values are computed over all history right after (status `computing`, then `live`).",
        examples=[OpenApiExample("a windowed counter", value=ORDERS, request_only=True),
                  OpenApiExample("a lead score", value=LEAD_SCORE, request_only=True)],
        responses={201: ComputedTraitOut, **schemas.errors(401, 429), **WRITE_ERRORS},
    )  # fmt: skip
    def post(self, request: Request) -> Response:
        try:
            trait = computed_trait_create(data=_body(request), actor=request.auth, reason="created through the API")
        except QueryError as exc:
            raise _invalid(exc) from None
        return Response(shape(trait), status=201)


class ComputedTraitView(ApiView):
    @extend_schema(tags=[TAG], summary="A computed trait", parameters=[KEY],
                   responses={200: ComputedTraitOut, **schemas.errors(401, 404, 429)})  # fmt: skip
    def get(self, request: Request, key: str) -> Response:
        return Response(shape(_trait(key)))

    @extend_schema(
        tags=[TAG], summary="Change a computed trait", parameters=[KEY], request=ComputedTraitIn(partial=True),
        description="Only the fields given change; a changed definition is computed again in full. The key is fixed.",
        responses={200: ComputedTraitOut, **schemas.errors(401, 404, 429), **WRITE_ERRORS},
    )  # fmt: skip
    def patch(self, request: Request, key: str) -> Response:
        _trait(key)
        try:
            trait = computed_trait_update(key=key, data=_body(request, partial=True), actor=request.auth,
                                          reason="changed through the API")  # fmt: skip
        except QueryError as exc:
            raise _invalid(exc) from None
        return Response(shape(trait))

    @extend_schema(tags=[TAG], summary="Delete a computed trait and its values", parameters=[KEY],
                   responses={204: None, **schemas.errors(401, 404, 429), **WRITE_ERRORS})  # fmt: skip
    def delete(self, request: Request, key: str) -> Response:
        _trait(key)
        computed_trait_delete(key=key, actor=request.auth, reason="deleted through the API")
        return Response(status=204)


class ComputeView(ApiView):
    @extend_schema(tags=[TAG], summary="Recompute a trait in full", parameters=[KEY], request=None,
                   responses={202: Accepted, **schemas.errors(401, 404, 429), **WRITE_ERRORS})  # fmt: skip
    def post(self, request: Request, key: str) -> Response:
        trait = _trait(key)
        if not trait.enabled:
            raise exceptions.ValidationError(f"{key}: the trait is disabled; enable it first.")
        computed_trait_recompute(trait_id=trait.pk, actor=request.auth, reason="recomputed through the API")
        return Response({"key": key, "status": "queued"}, status=202)


class ValuesView(ApiView):
    @extend_schema(tags=[TAG], summary="How a trait's values are spread", parameters=[KEY],
                   responses={200: DistributionOut, **schemas.errors(401, 404, 429)})  # fmt: skip
    def get(self, request: Request, key: str) -> Response:
        d = trait_distribution(trait_id=_trait(key).pk)
        return Response({
            "profiles": d.profiles, "kind": d.kind, "top": [{"value": v, "profiles": n} for v, n in d.top],
            "histogram": [{"from": a, "to": b, "profiles": n} for a, b, n in d.histogram],
            "min": d.minimum, "max": d.maximum,
        })  # fmt: skip
