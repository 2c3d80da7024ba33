"""`/api/v1/destinations`: define destinations, read their delivery log, replay what failed.

It lives here, at the URL root's floor, because destinations (floor 1) sit below the API's
access tokens (profiles, floor 2). Writing needs a token made with `--write`; errors name the
bad field; secrets are write-only (never in an answer)."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import exceptions, serializers
from rest_framework.request import Request
from rest_framework.response import Response

from destinations.definitions import DestinationError, public_settings
from destinations.models import Delivery, Destination
from destinations.selectors import deliveries_page, destinations_health
from destinations.services import deliveries_replay, destination_create, destination_delete, destination_update
from profiles.api import schemas
from profiles.api.base import ApiView, query
from profiles.api.schemas import StrictBooleanField, StrictCharField, StrictIntegerField

TAG = "Destinations"
ID = OpenApiParameter("id", int, OpenApiParameter.PATH, description="The destination's id.",
                      examples=[OpenApiExample("1", value=1)])  # fmt: skip
SUBSCRIPTION = 'Keys, or "all".'


class EventsIn(serializers.Serializer):
    sources = serializers.ListField(child=StrictIntegerField(), required=False, help_text="Source ids (1 to 100).")
    names = serializers.ListField(child=StrictCharField(), required=False, help_text="Event names; empty: all.")


class DestinationIn(serializers.Serializer):
    name = StrictCharField(max_length=100)
    kind = serializers.ChoiceField(choices=[c for c, _ in Destination.Kind.choices], help_text="Fixed once created.")
    enabled = StrictBooleanField(required=False)
    audiences = serializers.JSONField(required=False, help_text=f"Audience {SUBSCRIPTION}")
    traits = serializers.JSONField(required=False, help_text=f"Computed trait {SUBSCRIPTION}")
    events = EventsIn(required=False, help_text="Webhooks only: the raw events of these sources; {} for none.")
    consent_categories = serializers.ListField(child=StrictCharField(), required=False)
    settings = serializers.DictField(help_text="Per kind (see the README); secrets are write-only.")


class Health(serializers.Serializer):
    delivered = StrictIntegerField()
    pending = StrictIntegerField()
    retrying = StrictIntegerField()
    discarded = StrictIntegerField()
    filtered = StrictIntegerField()
    dead = StrictIntegerField()
    oldest_pending_at = serializers.DateTimeField(allow_null=True)
    last_error = StrictCharField(allow_blank=True)
    last_error_at = serializers.DateTimeField(allow_null=True)
    last_delivered_at = serializers.DateTimeField(allow_null=True)


class DestinationOut(DestinationIn):
    id = StrictIntegerField()
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()
    last_24h = Health()


class DestinationList(serializers.Serializer):
    results = DestinationOut(many=True)


class DeliveryOut(serializers.Serializer):
    id = StrictIntegerField()
    kind = StrictCharField()
    subject = StrictCharField(allow_blank=True)
    message_id = StrictCharField()
    status = serializers.ChoiceField(choices=[c for c, _ in Delivery.Status.choices])
    reason = StrictCharField(allow_blank=True)
    attempts = StrictIntegerField()
    created_at = serializers.DateTimeField()
    next_attempt_at = serializers.DateTimeField()
    finished_at = serializers.DateTimeField(allow_null=True)
    status_code = StrictIntegerField(allow_null=True)
    request = StrictCharField(allow_blank=True, help_text="The last request, trimmed; never credentials.")
    response = StrictCharField(allow_blank=True, help_text="The last response, trimmed.")
    notes = serializers.DictField()
    message = serializers.DictField(help_text="The Segment-format message.")


class CursorOut(serializers.Serializer):
    next = StrictCharField(allow_null=True)
    has_more = StrictBooleanField()


class DeliveriesOut(serializers.Serializer):
    data = DeliveryOut(many=True)
    cursor = CursorOut()


class DeliveriesQuery(serializers.Serializer):
    status = serializers.ChoiceField(choices=[c for c, _ in Delivery.Status.choices], required=False)
    limit = serializers.IntegerField(required=False, min_value=1, max_value=500, default=50)
    next = serializers.RegexField(r"^[0-9]{1,19}$", required=False, help_text="The cursor of the previous page.")


class ReplayIn(serializers.Serializer):
    delivery = StrictIntegerField(required=False, min_value=1, max_value=2**63 - 1,
                                  help_text="One dead or discarded delivery; without: every dead one.")  # fmt: skip


class ReplayOut(serializers.Serializer):
    replayed = StrictIntegerField()


RE_ENGAGE = {
    "name": "Mailjet re-engagement", "kind": "mailjet", "audiences": ["re_engage"], "traits": ["lead_score"],
    "consent_categories": ["marketing"],
    "settings": {"api_key": "…", "api_secret": "…", "lists": {"re_engage": 1234567}},
}  # fmt: skip
WEBHOOK = {
    "name": "Orders webhook", "kind": "webhook", "audiences": "all", "traits": [],
    "events": {"sources": [1], "names": ["Order Completed"]},
    "settings": {"urls": ["https://hooks.example.com/cdp"], "shared_secret": "…"},
}  # fmt: skip
DELIVERY = {
    "id": 981, "kind": "audience", "subject": "re_engage", "message_id": "3b1e…", "status": "dead",
    "reason": "retried for the whole window; last: Mailjet managemanycontacts answered 503", "attempts": 14,
    "created_at": "2026-12-04T06:00:00Z", "next_attempt_at": "2026-12-04T10:00:00Z",
    "finished_at": "2026-12-04T10:00:02Z", "status_code": 503,
    "request": "POST https://api.mailjet.com/v3/REST/contactslist/1234567/managemanycontacts\n{…}",
    "response": "503 Service Unavailable", "notes": {},
    "message": {"type": "identify", "traits": {"re_engage": True, "email": "ann@example.com"}},
}  # fmt: skip
WRITE_ERRORS = {
    400: OpenApiResponse(schemas.Error, description="A bad body: the message names the field, e.g. "
                         "`settings.urls[0]: 'ftp://x' is not an http:// or https:// URL.`"),
    403: OpenApiResponse(schemas.Error, description="A read-only token (make one with `create_access_token --write`)."),
}  # fmt: skip


def shape(d: Destination, health: Any) -> dict[str, Any]:
    return {
        "id": d.pk, "name": d.name, "kind": d.kind, "enabled": d.enabled, "audiences": d.audiences, "traits": d.traits,
        "events": d.events or {}, "consent_categories": d.consent_categories, "settings": public_settings(d.settings),
        "created_at": d.created_at, "updated_at": d.updated_at,
        "last_24h": {"delivered": health.delivered, "pending": health.pending, "retrying": health.retrying,
                     "discarded": health.discarded, "filtered": health.filtered, "dead": health.dead,
                     "oldest_pending_at": health.oldest_pending, "last_error": d.last_error,
                     "last_error_at": d.last_error_at, "last_delivered_at": d.last_delivered_at},
    }  # fmt: skip


def _one(d: Destination) -> dict[str, Any]:
    return shape(d, destinations_health(ids=[d.pk])[0])


def _destination(pk: str) -> Destination:
    found = Destination.objects.filter(pk=int(pk)).first() if pk.isdigit() and 0 < int(pk) < 2**63 else None
    if found is None:
        raise exceptions.NotFound(f"There is no destination {pk[:40]!r}.")
    return found


def _body(request: Request, *, partial: bool = False) -> dict[str, Any]:
    """The body, each field's type checked; the definition itself is checked by the service."""
    if not isinstance(request.data, dict):
        raise exceptions.ValidationError("The body is a JSON object.")
    if unknown := sorted(set(request.data) - set(DestinationIn().fields)):
        raise exceptions.ValidationError({name[:40]: "unknown field." for name in unknown[:5]})
    DestinationIn(data=request.data, partial=partial).is_valid(raise_exception=True)
    return dict(request.data)


def _invalid(exc: DestinationError) -> exceptions.ValidationError:
    return exceptions.ValidationError(f"{exc.path}: {exc.message}")


class DestinationsView(ApiView):
    @extend_schema(tags=[TAG], summary="Destinations, with their last 24 hours",
                   responses={200: DestinationList, **schemas.errors(401, 429)})  # fmt: skip
    def get(self, request: Request) -> Response:
        return Response({"results": [shape(h.destination, h) for h in destinations_health()]})

    @extend_schema(
        tags=[TAG], summary="Create a destination", request=DestinationIn,
        description="It first gets a full sync of the audiences it takes, then each change as it happens.",
        examples=[OpenApiExample("Mailjet re-engagement", value=RE_ENGAGE, request_only=True),
                  OpenApiExample("a webhook with the order stream", value=WEBHOOK, request_only=True)],
        responses={201: DestinationOut, **schemas.errors(401, 429), **WRITE_ERRORS},
    )  # fmt: skip
    def post(self, request: Request) -> Response:
        try:
            dest = destination_create(data=_body(request), actor=request.auth, reason="created through the API")
        except DestinationError as exc:
            raise _invalid(exc) from None
        return Response(_one(dest), status=201)


class DestinationView(ApiView):
    @extend_schema(tags=[TAG], summary="A destination", parameters=[ID],
                   responses={200: DestinationOut, **schemas.errors(401, 404, 429)})  # fmt: skip
    def get(self, request: Request, pk: str) -> Response:
        return Response(_one(_destination(pk)))

    @extend_schema(
        tags=[TAG], summary="Change a destination", parameters=[ID], request=DestinationIn(partial=True),
        description="Only the fields given change; secrets left out of `settings` stay. Audiences newly taken get "
                    "a full sync.",
        examples=[OpenApiExample("switch off", value={"enabled": False}, request_only=True)],
        responses={200: DestinationOut, **schemas.errors(401, 404, 429), **WRITE_ERRORS},
    )  # fmt: skip
    def patch(self, request: Request, pk: str) -> Response:
        found = _destination(pk)
        try:
            dest = destination_update(destination_id=found.pk, data=_body(request, partial=True), actor=request.auth,
                                      reason="changed through the API")  # fmt: skip
        except DestinationError as exc:
            raise _invalid(exc) from None
        return Response(_one(dest))

    @extend_schema(tags=[TAG], summary="Delete a destination and its deliveries", parameters=[ID],
                   responses={204: None, **schemas.errors(401, 404, 429), **WRITE_ERRORS})  # fmt: skip
    def delete(self, request: Request, pk: str) -> Response:
        destination_delete(destination_id=_destination(pk).pk, actor=request.auth, reason="deleted through the API")
        return Response(status=204)


class DeliveriesView(ApiView):
    @extend_schema(
        tags=[TAG], summary="A destination's deliveries, newest first", parameters=[ID, DeliveriesQuery],
        examples=[OpenApiExample("a dead delivery", value={"data": [DELIVERY], "cursor": {"next": None,
                                 "has_more": False}}, response_only=True, status_codes=["200"])],
        responses={200: DeliveriesOut, **schemas.errors(400, 401, 404, 429)},
    )  # fmt: skip
    def get(self, request: Request, pk: str) -> Response:
        dest = _destination(pk)
        params = query(DeliveriesQuery, request)
        rows, after = deliveries_page(destination_id=dest.pk, status=params.get("status"), limit=params["limit"],
                                      before=int(params["next"]) if params.get("next") else None)  # fmt: skip
        return Response({
            "data": [{f: getattr(r, f) for f in DeliveryOut().fields} for r in rows],
            "cursor": {"next": str(after) if after else None, "has_more": after is not None},
        })  # fmt: skip


class ReplayView(ApiView):
    @extend_schema(
        tags=[TAG], summary="Replay dead deliveries", parameters=[ID], request=ReplayIn,
        description="Puts one dead or discarded delivery, or every dead one, back to pending with a new retry "
                    "window; the messageId stays, so a receiver can dedup.",
        examples=[OpenApiExample("every dead delivery", value={}, request_only=True),
                  OpenApiExample("replayed", value={"replayed": 12}, response_only=True, status_codes=["200"])],
        responses={200: ReplayOut, **schemas.errors(400, 401, 404, 429), **WRITE_ERRORS},
    )  # fmt: skip
    def post(self, request: Request, pk: str) -> Response:
        dest = _destination(pk)
        data = request.data if isinstance(request.data, dict) else None
        if data is None:
            raise exceptions.ValidationError("The body is a JSON object.")
        if unknown := sorted(set(data) - {"delivery"}):
            raise exceptions.ValidationError({unknown[0][:40]: "Unknown field."})
        ReplayIn(data=data).is_valid(raise_exception=True)
        one = data.get("delivery")
        if one is not None and not Delivery.objects.filter(pk=one, destination=dest).exists():
            raise exceptions.NotFound(f"Destination {pk} has no delivery {one}.")
        n = deliveries_replay(destination_id=dest.pk, delivery_id=one, actor=request.auth,
                              reason="replayed through the API")  # fmt: skip
        return Response({"replayed": n})
