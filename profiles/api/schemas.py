"""Serializers that validate query parameters and describe response bodies in the OpenAPI
schema (drf-spectacular). The bodies themselves are built by `shapes.py`."""

from __future__ import annotations

from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.utils import OpenApiExample, OpenApiResponse, inline_serializer
from rest_framework import serializers

from profiles.timeline import BadCursor, Cursor


def comma_list(value: str) -> list[str]:
    """`a, b,,c` as `["a", "b", "c"]`."""
    return [item.strip() for item in value.split(",") if item.strip()]


class CommaList(serializers.CharField):
    """`a,b,c` in a query string, as a list."""

    def to_internal_value(self, data: Any) -> list[str]:
        return comma_list(super().to_internal_value(data))


class EventCursorField(serializers.CharField):
    def to_internal_value(self, data: Any) -> Cursor:
        try:
            return Cursor.decode(super().to_internal_value(data))
        except BadCursor as exc:
            raise serializers.ValidationError(str(exc)) from exc


class AccessTokenScheme(OpenApiAuthenticationExtension):
    """Documents `AccessTokenAuthentication`: the token as the Basic username, or a Bearer."""

    target_class = "profiles.api.auth.AccessTokenAuthentication"
    name = ["accessTokenBasic", "accessTokenBearer"]

    def get_security_definition(self, auto_schema: Any) -> list[dict[str, str]]:
        return [
            {"type": "http", "scheme": "basic", "description": "The access token as username, a blank password."},
            {"type": "http", "scheme": "bearer", "description": "Authorization: Bearer <access token>."},
        ]


# --- Query parameters ---------------------------------------------------------------------


class TraitsQuery(serializers.Serializer):
    include = CommaList(required=False, help_text="Only these traits, comma-separated.")
    limit = serializers.IntegerField(min_value=1, max_value=200, default=10)
    verbose = serializers.BooleanField(default=False, help_text="Each trait as {value, source_id, updated_at}.")
    next = serializers.CharField(required=False, help_text="The cursor of the next page.")


TraitsQuery._declared_fields["class"] = serializers.ChoiceField(  # `class` is a Python keyword
    choices=["audience", "computed_trait", "custom_trait"],
    required=False,
    help_text="Only audience memberships, computed traits or custom traits.",
)


class ExternalIdsQuery(serializers.Serializer):
    include = CommaList(required=False, help_text="Only these identifier types, e.g. user_id,email.")
    limit = serializers.IntegerField(min_value=1, max_value=100, default=10)
    verbose = serializers.BooleanField(default=False)
    next = serializers.CharField(required=False, help_text="The cursor of the next page.")


class EventsQuery(serializers.Serializer):
    start = serializers.DateTimeField(required=False, help_text="ISO 8601, inclusive.")
    end = serializers.DateTimeField(required=False, help_text="ISO 8601, exclusive.")
    include = CommaList(required=False, help_text="Only these event (or page/screen) names.")
    exclude = CommaList(required=False, help_text="Not these track event names.")
    limit = serializers.IntegerField(min_value=1, max_value=100, default=10)
    sort = serializers.ChoiceField(choices=["asc", "desc"], default="desc")
    next = EventCursorField(required=False, help_text="The cursor of the next page.")


class MetadataQuery(serializers.Serializer):
    verbose = serializers.BooleanField(default=False)


class LinksQuery(serializers.Serializer):
    limit = serializers.IntegerField(min_value=1, max_value=20, default=20)
    next = serializers.CharField(required=False, help_text="The cursor of the next page.")


class SearchQuery(serializers.Serializer):
    q = serializers.CharField(
        required=False,
        allow_blank=True,
        max_length=500,
        help_text="`kind:value` (an identifier, exactly), a `use_…` id, `trait:value`, or a fragment of an "
        "email or of a trait value.",
    )
    last_seen_after = serializers.DateTimeField(required=False)
    last_seen_before = serializers.DateTimeField(required=False)
    limit = serializers.IntegerField(min_value=1, max_value=100, default=20)
    cursor = serializers.CharField(required=False, help_text="`next` from the previous page.")


class RestEventsQuery(serializers.Serializer):
    type = serializers.MultipleChoiceField(
        choices=["identify", "track", "page", "screen", "group", "alias"], required=False, help_text="Repeatable."
    )
    name = CommaList(required=False, help_text="Track event names or page/screen names, comma-separated.")
    exclude = CommaList(required=False, help_text="Not these track event names.")
    start = serializers.DateTimeField(required=False, help_text="Inclusive.")
    end = serializers.DateTimeField(required=False, help_text="Exclusive.")
    order = serializers.ChoiceField(choices=["desc", "asc"], default="desc")
    limit = serializers.IntegerField(min_value=1, max_value=200, default=50)
    cursor = EventCursorField(required=False, help_text="`next` from the previous page.")


# --- Response bodies ----------------------------------------------------------------------


class ErrorDetail(serializers.Serializer):
    code = serializers.ChoiceField(
        choices=["validation_error", "invalid_request_error", "authentication_error", "not_found", "rate_limit_error"]
    )
    message = serializers.CharField()


class Error(serializers.Serializer):
    error = ErrorDetail()


class SegmentCursor(serializers.Serializer):
    url = serializers.CharField()
    has_more = serializers.BooleanField()
    next = serializers.CharField(allow_blank=True)
    limit = serializers.IntegerField()


class TraitsBody(serializers.Serializer):
    traits = serializers.DictField(child=serializers.JSONField())
    cursor = SegmentCursor()


class ExternalId(serializers.Serializer):
    id = serializers.CharField()
    type = serializers.CharField()
    source_id = serializers.CharField(allow_null=True)
    collection = serializers.CharField()
    created_at = serializers.DateTimeField(allow_null=True)
    encoding = serializers.CharField()
    first_message_id = serializers.CharField(allow_null=True)


class ExternalIdsBody(serializers.Serializer):
    data = ExternalId(many=True)
    cursor = SegmentCursor()


class EventExternalId(serializers.Serializer):
    id = serializers.CharField()
    type = serializers.CharField()
    source_id = serializers.CharField(allow_null=True)
    collection = serializers.CharField()
    encoding = serializers.CharField()


class SegmentEvent(serializers.Serializer):
    external_ids = EventExternalId(many=True)
    context = serializers.JSONField()
    type = serializers.CharField()
    message_id = serializers.CharField()
    source_id = serializers.CharField(allow_null=True)
    timestamp = serializers.DateTimeField()
    properties = serializers.JSONField()
    traits = serializers.JSONField()
    event = serializers.CharField(allow_null=True)
    name = serializers.CharField(allow_null=True)
    related = inline_serializer("Related", {"users": serializers.CharField()})


class SegmentEventsBody(serializers.Serializer):
    data = SegmentEvent(many=True)
    cursor = SegmentCursor()


class Metadata(serializers.Serializer):
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()
    expires_at = serializers.DateTimeField(allow_null=True)
    first_message_id = serializers.CharField(allow_null=True)
    first_source_id = serializers.CharField(allow_null=True)
    last_message_id = serializers.CharField(allow_null=True)
    last_source_id = serializers.CharField(allow_null=True)


class MetadataBody(serializers.Serializer):
    metadata = Metadata()


class Link(serializers.Serializer):
    to_collection = serializers.CharField()
    external_ids = ExternalId(many=True)


class LinksBody(serializers.Serializer):
    data = Link(many=True)
    cursor = SegmentCursor()


class Identity(serializers.Serializer):
    type = serializers.CharField()
    id = serializers.CharField()
    source_id = serializers.IntegerField(allow_null=True)
    first_message_id = serializers.CharField(allow_null=True)
    first_event_id = serializers.IntegerField(allow_null=True)
    first_seen_at = serializers.DateTimeField()
    last_seen_at = serializers.DateTimeField()


class MergeOut(serializers.Serializer):
    winner = serializers.CharField()
    loser = serializers.CharField()
    message_id = serializers.CharField(allow_null=True)
    event_id = serializers.IntegerField(allow_null=True)
    identifiers = serializers.ListField(child=serializers.CharField())
    manual = serializers.BooleanField()
    actor = serializers.CharField(allow_null=True)
    reason = serializers.CharField(allow_blank=True)
    created_at = serializers.DateTimeField()


class DemotionOut(serializers.Serializer):
    type = serializers.CharField()
    id = serializers.CharField()
    rule = serializers.CharField()
    message_id = serializers.CharField(allow_null=True)
    event_id = serializers.IntegerField()
    created_at = serializers.DateTimeField()


class AuditOut(serializers.Serializer):
    action = serializers.CharField()
    actor = serializers.CharField(allow_null=True)
    reason = serializers.CharField(allow_blank=True)
    details = serializers.JSONField()
    created_at = serializers.DateTimeField()


class ExplanationBody(serializers.Serializer):
    profile = serializers.CharField(help_text="The live profile's id.")
    requested = serializers.CharField(help_text="The profile the identifier names: merged away if it differs.")
    identities = Identity(many=True)
    merges = MergeOut(many=True)
    demotions = DemotionOut(many=True)
    audits = AuditOut(many=True)


class ProfileOut(serializers.Serializer):
    id = serializers.CharField()
    traits = serializers.DictField(child=serializers.JSONField())
    first_seen_at = serializers.DateTimeField(allow_null=True)
    last_seen_at = serializers.DateTimeField(allow_null=True)
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()
    merge_count = serializers.IntegerField()


class MembershipOut(serializers.Serializer):
    key = serializers.CharField(help_text="The audience's key.")
    entered_at = serializers.DateTimeField()


class ProfileDetailOut(ProfileOut):
    audiences = MembershipOut(many=True, help_text="The audiences the profile is in now.")


class ProfilePage(serializers.Serializer):
    results = ProfileOut(many=True)
    next = serializers.CharField(allow_null=True)


class RestEvent(serializers.Serializer):
    id = serializers.IntegerField()
    message_id = serializers.CharField()
    type = serializers.CharField()
    event = serializers.CharField(allow_null=True)
    name = serializers.CharField(allow_null=True)
    timestamp = serializers.DateTimeField()
    received_at = serializers.DateTimeField()
    source_id = serializers.IntegerField()
    user_id = serializers.CharField(allow_null=True)
    anonymous_id = serializers.CharField(allow_null=True)
    group_id = serializers.CharField(allow_null=True)
    properties = serializers.JSONField()
    traits = serializers.JSONField()
    context = serializers.JSONField()


class RestEventPage(serializers.Serializer):
    results = RestEvent(many=True)
    next = serializers.CharField(allow_null=True)


class IdentityList(serializers.Serializer):
    results = Identity(many=True)


def errors(*codes: int) -> dict[int, OpenApiResponse]:
    """The documented error responses, all in the one error shape."""
    text = {
        400: "Invalid parameters (`validation_error`).",
        401: "No, unknown or revoked access token (`authentication_error`).",
        403: "A method other than GET or HEAD: tokens are read-only.",
        404: "No such space, collection or profile (`not_found`).",
        429: "Over the per-token rate limit (`rate_limit_error`); see Retry-After.",
        503: "The database is unavailable (`service_unavailable`); retry after the Retry-After seconds.",
    }
    example = OpenApiExample(
        "not found", value={"error": {"code": "not_found", "message": "Profile was not found."}}, status_codes=["404"]
    )
    return {
        code: OpenApiResponse(Error, description=text[code], examples=[example] if code == 404 else [])
        for code in codes
    }


# --- Strict JSON bodies ----------------------------------------------------------------------
# DRF's fields coerce: "true" and 1 for a boolean, "5" and 5.0 for an integer, 5 for a string.
# A JSON body is typed, and a value of the wrong type is a mistake to report, not to guess at.


class StrictBooleanField(serializers.BooleanField):
    def to_internal_value(self, data: Any) -> bool:
        if not isinstance(data, bool):
            self.fail("invalid", input=data)
        return data


class StrictIntegerField(serializers.IntegerField):
    def to_internal_value(self, data: Any) -> int:
        if isinstance(data, bool) or not isinstance(data, int):
            self.fail("invalid")
        return int(super().to_internal_value(data))


class StrictFloatField(serializers.FloatField):
    def to_internal_value(self, data: Any) -> float:
        if isinstance(data, bool) or not isinstance(data, int | float):
            self.fail("invalid")
        return float(super().to_internal_value(data))


class StrictCharField(serializers.CharField):
    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        return str(super().to_internal_value(data))
