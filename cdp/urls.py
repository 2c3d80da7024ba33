from django.contrib import admin
from django.urls import include, path

from cdp import destinations_api
from cdp.health import healthz, readyz

urlpatterns = [
    path("admin/", admin.site.urls),
    path("healthz", healthz),  # liveness: the process answers
    path("readyz", readyz),  # readiness: PostgreSQL and the broker answer (cdp/health.py)
    # Machine traffic first, so resolving it tries few patterns: the Profile API (/v1/spaces/…)
    # and /api/v1/, before the tracking edge's /v1/<call>.
    path("", include("profiles.api.urls")),
    path("api/v1/destinations", destinations_api.DestinationsView.as_view(), name="api-destinations"),
    path("api/v1/destinations/<str:pk>", destinations_api.DestinationView.as_view(), name="api-destination"),
    path(
        "api/v1/destinations/<str:pk>/deliveries",
        destinations_api.DeliveriesView.as_view(),
        name="api-destination-deliveries",
    ),
    path("api/v1/destinations/<str:pk>/replay", destinations_api.ReplayView.as_view(), name="api-destination-replay"),
    path("", include("ingest.urls")),
    path("", include("audiences.urls")),  # /api/v1/audiences
    path("", include("sqltraits.urls")),  # /api/v1/sql-traits
]
