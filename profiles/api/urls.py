"""URLs of the read APIs. The Profile API sits under /v1/spaces/, beside the tracking API's
/v1/<call> (whose `<str:path>` never matches a path with a slash), and is included first."""

from __future__ import annotations

from django.urls import path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView

from profiles.api import computed, rest, segment

PROFILE = "v1/spaces/<str:space_id>/collections/<str:collection>/profiles/<path:identifier>"

urlpatterns = [
    path(f"{PROFILE}/traits", segment.TraitsView.as_view(), name="profile-api-traits"),
    path(f"{PROFILE}/external_ids", segment.ExternalIdsView.as_view(), name="profile-api-external-ids"),
    path(f"{PROFILE}/events", segment.EventsView.as_view(), name="profile-api-events"),
    path(f"{PROFILE}/metadata", segment.MetadataView.as_view(), name="profile-api-metadata"),
    path(f"{PROFILE}/links", segment.LinksView.as_view(), name="profile-api-links"),
    path(f"{PROFILE}/merges", segment.MergesView.as_view(), name="profile-api-merges"),
    re_path(r"^v1/spaces/(?P<rest>[\s\S]*)$", segment.UnknownResourceView.as_view()),  # even a newline
    path("api/v1/profiles", rest.ProfileSearchView.as_view(), name="api-profiles"),
    path("api/v1/profiles/<str:ref>", rest.ProfileView.as_view(), name="api-profile"),
    path("api/v1/profiles/<str:ref>/events", rest.ProfileEventsView.as_view(), name="api-profile-events"),
    path("api/v1/profiles/<str:ref>/identities", rest.ProfileIdentitiesView.as_view(), name="api-profile-identities"),
    path("api/v1/profiles/<str:ref>/merges", rest.ProfileMergesView.as_view(), name="api-profile-merges"),
    path("api/v1/computed-traits", computed.ComputedTraitsView.as_view(), name="api-computed-traits"),
    path("api/v1/computed-traits/<str:key>", computed.ComputedTraitView.as_view(), name="api-computed-trait"),
    path("api/v1/computed-traits/<str:key>/compute", computed.ComputeView.as_view(), name="api-computed-trait-compute"),
    path("api/v1/computed-traits/<str:key>/values", computed.ValuesView.as_view(), name="api-computed-trait-values"),
    path("api/v1/schema", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/v1/docs", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
    path("api/v1/redoc", SpectacularRedocView.as_view(url_name="api-schema"), name="api-redoc"),
]
