"""Our REST API, `/api/v1/`: search profiles, read one, its events, identities and merges.
A profile is named by its `use_…` id or by any identifier `kind:value`."""

from __future__ import annotations

import base64
import binascii

from drf_spectacular.utils import OpenApiExample, OpenApiParameter, extend_schema
from rest_framework import exceptions
from rest_framework.request import Request
from rest_framework.response import Response

from profiles.api import schemas, shapes
from profiles.api.base import ApiView, query
from profiles.memberships import profile_memberships
from profiles.models import Identity, Profile
from profiles.selectors import profile_events, profile_explain, profile_lookup, profile_search

TAG = "Profiles"
REF = OpenApiParameter(
    "ref",
    str,
    OpenApiParameter.PATH,
    description="The profile's `use_…` id, or any identifier `kind:value` (e.g. `email:ada@example.com`).",
    examples=[OpenApiExample("user id", value="user_id:u1")],
)


def resolve(ref: str) -> Profile:
    if "\x00" in ref:
        raise exceptions.ValidationError("A profile reference may not contain NUL characters.")
    kind, sep, value = ref.partition(":")
    if not sep:
        kind, value = "use", ref
    if not kind.strip() or not value.strip():
        raise exceptions.ValidationError(f"A profile is `use_…` or `kind:value`, not {ref!r}.")
    profile = profile_lookup(kind=kind, value=value)
    if profile is None:
        raise exceptions.NotFound("Profile was not found.")
    return profile


def _id_cursor(text: str | None) -> int | None:
    if not text:
        return None
    try:
        return int(
            base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_", validate=True).decode().removeprefix("p")
        )
    except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
        raise exceptions.ValidationError({"cursor": "invalid cursor"}) from exc


class ProfileSearchView(ApiView):
    @extend_schema(
        tags=[TAG],
        summary="Search profiles",
        operation_id="profiles_search",
        description="Newest profiles first. `q` is an identifier `kind:value` (exact), a `use_…` id, "
        "`trait:value` (a trait equal to a value), or a fragment (3+ characters) of an email or a trait value; "
        "any other text also matches identifiers equal to it.",
        parameters=[schemas.SearchQuery],
        responses={200: schemas.ProfilePage, **schemas.errors(400, 401, 403, 429, 503)},
    )
    def get(self, request: Request) -> Response:
        params = query(schemas.SearchQuery, request)
        qs = profile_search(query=params.get("q", ""))
        if "last_seen_after" in params:
            qs = qs.filter(last_seen_at__gte=params["last_seen_after"])
        if "last_seen_before" in params:
            qs = qs.filter(last_seen_at__lt=params["last_seen_before"])
        after = _id_cursor(params.get("cursor"))
        if after is not None:
            qs = qs.filter(id__lt=after)
        limit = params["limit"]
        rows = list(qs.order_by("-id")[: limit + 1])
        page = rows[:limit]
        next_ = base64.urlsafe_b64encode(f"p{page[-1].id}".encode()).decode().rstrip("=") if len(rows) > limit else None
        return Response({"results": [shapes.profile(row) for row in page], "next": next_})


class ProfileView(ApiView):
    @extend_schema(
        tags=[TAG],
        summary="A profile",
        parameters=[REF],
        responses={200: schemas.ProfileDetailOut, **schemas.errors(400, 401, 403, 404, 429, 503)},
    )
    def get(self, request: Request, ref: str) -> Response:
        profile = resolve(ref)
        audiences = [{"key": key, "entered_at": shapes.iso(at)} for key, at in profile_memberships(profile.id)]
        return Response({**shapes.profile(profile), "audiences": audiences})


class ProfileEventsView(ApiView):
    @extend_schema(
        tags=[TAG],
        summary="A profile's events",
        description="Newest first (or `order=asc`), paged by cursor: pages neither repeat nor skip while events "
        "arrive.",
        parameters=[REF, schemas.RestEventsQuery],
        responses={200: schemas.RestEventPage, **schemas.errors(400, 401, 403, 404, 429, 503)},
    )
    def get(self, request: Request, ref: str) -> Response:
        params = query(schemas.RestEventsQuery, request)
        profile = resolve(ref)
        events, next_cursor = profile_events(
            profile_id=profile.id,
            limit=params["limit"],
            after=params.get("cursor"),
            oldest_first=params["order"] == "asc",
            types=sorted(params["type"]) if params.get("type") else None,
            names=params.get("name") or None,
            exclude_names=params.get("exclude") or None,
            start=params.get("start"),
            end=params.get("end"),
        )
        return Response(
            {
                "results": [shapes.rest_event(event) for event in events],
                "next": next_cursor.encode() if next_cursor else None,
            }
        )


class ProfileIdentitiesView(ApiView):
    @extend_schema(
        tags=[TAG],
        summary="A profile's identifiers, with where each came from",
        description="All of them (a profile holds at most 1,000), oldest first.",
        parameters=[REF],
        responses={200: schemas.IdentityList, **schemas.errors(400, 401, 403, 404, 429, 503)},
    )
    def get(self, request: Request, ref: str) -> Response:
        profile = resolve(ref)
        rows = Identity.objects.filter(profile=profile).order_by("first_seen_at", "id")
        return Response({"results": [shapes.identity(row) for row in rows]})


class ProfileMergesView(ApiView):
    @extend_schema(
        tags=[TAG],
        summary="A profile's merge history",
        description="Identifiers with provenance, merges, demotions and staff actions (splits, removals, "
        "manual merges), oldest first.",
        parameters=[REF],
        responses={200: schemas.ExplanationBody, **schemas.errors(400, 401, 403, 404, 429, 503)},
    )
    def get(self, request: Request, ref: str) -> Response:
        profile = resolve(ref)
        return Response(shapes.explanation(profile_explain(profile_id=profile.id)))
