"""Segment's Profile API, compatible: GET
`/v1/spaces/<space_id>/collections/users/profiles/<id_type>:<value>/<resource>` for traits,
external_ids, events, metadata and links, plus our `/merges` (why the profile holds what it
holds). See docs/architecture.md for where we differ (every event type, no 14-day window)."""

from __future__ import annotations

import base64
import binascii
from datetime import datetime
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponseBase, QueryDict
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, extend_schema
from rest_framework import exceptions
from rest_framework.request import Request
from rest_framework.response import Response

from profiles.api import lean, schemas, shapes
from profiles.api.base import ApiView, query
from profiles.models import Event, Identity, Profile
from profiles.selectors import (
    TraitValue,
    profile_events,
    profile_explain,
    profile_groups,
    profile_lookup,
    profile_lookup_traits,
)

TAG = "Segment Profile API"
COLLECTIONS = {"users"}  # accounts (groups) have no profiles here; see /links

PATH_PARAMETERS = [
    OpenApiParameter(
        "space_id",
        str,
        OpenApiParameter.PATH,
        description="`default`, or CDP_SPACE_ID.",
        examples=[OpenApiExample("default", value="default")],
    ),
    OpenApiParameter("collection", str, OpenApiParameter.PATH, enum=sorted(COLLECTIONS)),
    OpenApiParameter(
        "identifier",
        str,
        OpenApiParameter.PATH,
        description="`<id_type>:<value>` (e.g. `user_id:u1`, `email:ada@example.com`) or the profile's `use_…` id. "
        "Merged-away identifiers and ids find the profile they were merged into.",
        examples=[
            OpenApiExample("user id", value="user_id:u1"),
            OpenApiExample("email", value="email:ada@example.com"),
        ],
    ),
]


def space_id() -> str:
    return str(getattr(settings, "CDP_SPACE_ID", "") or "default")


def resolve(*, space: str, collection: str, identifier: str) -> Profile:
    """The live profile the path names; 404 for another space, collection or an unknown one,
    400 for an identifier that is not `type:value`."""
    profile = profile_lookup(**_reference(space=space, collection=collection, identifier=identifier))
    if profile is None:
        raise exceptions.NotFound("Profile was not found.")
    return profile


def _reference(*, space: str, collection: str, identifier: str) -> dict[str, str]:
    """The `kind` and `value` the path names; 404 for another space or collection, 400 for an
    identifier that is not `type:value`."""
    if space != space_id():
        raise exceptions.NotFound("Space was not found.")
    if collection not in COLLECTIONS:
        raise exceptions.NotFound(f"Collection {collection!r} was not found.")
    if "\x00" in identifier:
        raise exceptions.ValidationError("The identifier may not contain NUL characters.")
    kind, sep, value = identifier.partition(":")
    if not sep and identifier.startswith("use_"):
        kind, value = "use", identifier
    elif not sep or not kind.strip() or not value.strip():
        raise exceptions.ValidationError(f"The identifier must be <id_type>:<value> or a use_ id, not {identifier!r}.")
    return {"kind": kind, "value": value}


def _cursor(*, space: str, profile: Profile, resource: str, has_more: bool, next_: str, limit: int) -> dict[str, Any]:
    url = f"/v1/spaces/{space}/collections/users/profiles/{profile.key}/{resource}"
    return {"url": url, "has_more": has_more, "next": next_ if has_more else "", "limit": limit}


def _encode(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def _decode(text: str | None) -> str:
    if not text:
        return ""
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_", validate=True).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
        raise exceptions.ValidationError({"next": "invalid cursor"}) from exc


def _links_after(text: str | None) -> tuple[datetime, str] | None:
    """A `/links` cursor: the last group's first-joined time and id."""
    if not text:
        return None
    at, sep, group_id = _decode(text).partition("\x00")
    try:
        when = datetime.fromisoformat(at)
    except ValueError:
        when = None
    if not sep or when is None or when.tzinfo is None:
        raise exceptions.ValidationError({"next": "invalid cursor"})
    return when, group_id


def _schema(body: Any, *, summary: str, parameters: Any = None) -> Any:
    return extend_schema(
        tags=[TAG],
        summary=summary,
        parameters=[*PATH_PARAMETERS, *([parameters] if parameters else [])],
        responses={200: body, **schemas.errors(400, 401, 403, 404, 429, 503)},
    )


class TraitsView(ApiView):
    """The hot GET: one per page view of a personalised site. A GET takes the lean path
    (`lean.py`: the same checks and answers without DRF's machinery) and reads the profile
    with its traits in one statement; other methods, and requests the lean path leaves to
    DRF, go through DRF to the same `traits_body`."""

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        if not lean.takes(request):
            return super().dispatch(request, *args, **kwargs)
        return lean.serve(request, lambda: traits_body(params=traits_query(request), **kwargs))

    @_schema(schemas.TraitsBody, summary="A profile's traits", parameters=schemas.TraitsQuery)
    def get(self, request: Request, space_id: str, collection: str, identifier: str) -> Response:
        params = query(schemas.TraitsQuery, request)
        return Response(traits_body(params=params, space_id=space_id, collection=collection, identifier=identifier))


def traits_body(*, params: dict[str, Any], space_id: str, collection: str, identifier: str) -> dict[str, Any]:
    """`/traits`' answer; raises NotFound / ValidationError as `resolve` does."""
    ref = _reference(space=space_id, collection=collection, identifier=identifier)
    found = profile_lookup_traits(**ref, trait_class=params.get("class"))
    if found is None:
        raise exceptions.NotFound("Profile was not found.")
    profile, traits = found
    keys = sorted(traits)
    if "include" in params:
        wanted = set(params["include"])
        keys = [key for key in keys if key in wanted]
    after = _decode(params.get("next"))
    keys = [key for key in keys if key > after]
    page, limit = keys[: params["limit"]], params["limit"]
    shown = {key: _shown(traits[key], params["verbose"]) for key in page}
    cursor = _cursor(
        space=space_id,
        profile=profile,
        resource="traits",
        has_more=len(keys) > limit,
        next_=_encode(page[-1]) if page else "",
        limit=limit,
    )
    return {"traits": shown, "cursor": cursor}


def _shown(trait: TraitValue, verbose: bool) -> Any:
    return trait.verbose() if verbose else trait.value


_TRAITS_CLASSES = {"audience", "computed_trait", "custom_trait"}
_TRUE, _FALSE = {"true", "True", "1"}, {"false", "False", "0"}


def traits_query(request: HttpRequest) -> dict[str, Any]:
    """`query(schemas.TraitsQuery, request)`, read without the serializer when every value is
    in its plain form (`limit=20`, `verbose=true`, a `class` named exactly, ...): the same
    validated values, for ~5% of a lookup less. Anything else (a value to refuse, an unknown
    parameter, a form the serializer would still accept such as `limit=+5`) goes through
    the serializer, which answers it as always."""
    params: QueryDict = request.GET
    plain = _traits_query_plain(params) if params else {"limit": 10, "verbose": False}
    return plain if plain is not None else query(schemas.TraitsQuery, request)


def _traits_query_plain(params: QueryDict) -> dict[str, Any] | None:
    out: dict[str, Any] = {"limit": 10, "verbose": False}
    for key in params:
        value = str(params[key])  # the last value, as the serializer reads it
        if key == "limit" and value.isascii() and value.isdigit() and 1 <= int(value) <= 200:
            out["limit"] = int(value)
        elif key == "verbose" and (value in _TRUE or value in _FALSE):
            out["verbose"] = value in _TRUE
        elif key == "class" and value in _TRAITS_CLASSES:
            out["class"] = value
        elif key in ("include", "next") and value and value == value.strip() and "\x00" not in value:
            out[key] = schemas.comma_list(value) if key == "include" else value
        else:
            return None
    return out


class ExternalIdsView(ApiView):
    @_schema(schemas.ExternalIdsBody, summary="A profile's identifiers", parameters=schemas.ExternalIdsQuery)
    def get(self, request: Request, space_id: str, collection: str, identifier: str) -> Response:
        params = query(schemas.ExternalIdsQuery, request)
        profile = resolve(space=space_id, collection=collection, identifier=identifier)
        after = _decode(params.get("next"))
        try:
            after_id = int(after) if after else 0
        except ValueError as exc:
            raise exceptions.ValidationError({"next": "invalid cursor"}) from exc
        qs = Identity.objects.filter(profile=profile, id__gt=after_id)
        if "include" in params:
            qs = qs.filter(kind__in=params["include"])
        limit = params["limit"]
        rows = list(qs.order_by("id")[: limit + 1])
        page = rows[:limit]
        cursor = _cursor(
            space=space_id,
            profile=profile,
            resource="external_ids",
            has_more=len(rows) > limit,
            next_=_encode(str(page[-1].id)) if page else "",
            limit=limit,
        )
        return Response({"data": [shapes.external_id(row) for row in page], "cursor": cursor})


class EventsView(ApiView):
    @_schema(schemas.SegmentEventsBody, summary="A profile's events, newest first", parameters=schemas.EventsQuery)
    def get(self, request: Request, space_id: str, collection: str, identifier: str) -> Response:
        params = query(schemas.EventsQuery, request)
        profile = resolve(space=space_id, collection=collection, identifier=identifier)
        events, next_cursor = profile_events(
            profile_id=profile.id,
            limit=params["limit"],
            after=params.get("next"),
            oldest_first=params["sort"] == "asc",
            names=params.get("include") or None,
            exclude_names=params.get("exclude") or None,
            start=params.get("start"),
            end=params.get("end"),
        )
        cursor = _cursor(
            space=space_id,
            profile=profile,
            resource="events",
            has_more=next_cursor is not None,
            next_=next_cursor.encode() if next_cursor else "",
            limit=params["limit"],
        )
        return Response({"data": [shapes.segment_event(event, profile.key) for event in events], "cursor": cursor})


class MetadataView(ApiView):
    @_schema(schemas.MetadataBody, summary="When a profile was created and changed", parameters=schemas.MetadataQuery)
    def get(self, request: Request, space_id: str, collection: str, identifier: str) -> Response:
        query(schemas.MetadataQuery, request)
        profile = resolve(space=space_id, collection=collection, identifier=identifier)
        events = Event.objects.filter(profile_id=profile.id).values("message_id", "source_id")
        first = dict(events.order_by("timestamp", "id").first() or {})
        last = dict(events.order_by("-timestamp", "-id").first() or {})
        return Response(
            {
                "metadata": {
                    "created_at": shapes.iso(profile.created_at),
                    "updated_at": shapes.iso(profile.updated_at),
                    "expires_at": None,
                    "first_message_id": first.get("message_id"),
                    "first_source_id": shapes.source(first.get("source_id")),
                    "last_message_id": last.get("message_id"),
                    "last_source_id": shapes.source(last.get("source_id")),
                }
            }
        )


class LinksView(ApiView):
    @_schema(schemas.LinksBody, summary="The accounts (groups) a profile belongs to", parameters=schemas.LinksQuery)
    def get(self, request: Request, space_id: str, collection: str, identifier: str) -> Response:
        params = query(schemas.LinksQuery, request)
        profile = resolve(space=space_id, collection=collection, identifier=identifier)
        limit = params["limit"]
        groups, more = profile_groups(profile_id=profile.id, after=_links_after(params.get("next")), limit=limit)
        ids = [
            {
                "id": row["group_id"],
                "type": "group_id",
                "source_id": shapes.source(row["source_id"]),
                "collection": "accounts",
                "created_at": shapes.iso(row["created_at"]),
                "encoding": "none",
                "first_message_id": None,
            }
            for row in groups
        ]
        data = [{"to_collection": "accounts", "external_ids": ids}] if ids else []
        cursor = _cursor(
            space=space_id, profile=profile, resource="links", has_more=more, limit=limit,
            next_=_encode(f"{groups[-1]['created_at'].isoformat()}\x00{groups[-1]['group_id']}") if groups else "",
        )  # fmt: skip
        return Response({"data": data, "cursor": cursor})


class MergesView(ApiView):
    @_schema(schemas.ExplanationBody, summary="Why a profile holds its identifiers (beyond Segment)")
    def get(self, request: Request, space_id: str, collection: str, identifier: str) -> Response:
        profile = resolve(space=space_id, collection=collection, identifier=identifier)
        return Response(shapes.explanation(profile_explain(profile_id=profile.id)))


class UnknownResourceView(ApiView):
    """Any other path under /v1/spaces/: the JSON 404, not Django's HTML one."""

    permission_classes: list[Any] = []
    authentication_classes: list[Any] = []
    throttle_classes: list[Any] = []

    @extend_schema(exclude=True)
    def get(self, request: Request, rest: str) -> Response:
        raise exceptions.NotFound("No such resource: use traits, external_ids, events, metadata, links or merges.")
