from django.contrib import admin
from django.http import HttpRequest, HttpResponse
from django.urls import include, path


def healthz(request: HttpRequest) -> HttpResponse:
    return HttpResponse("ok\n", content_type="text/plain")


urlpatterns = [
    path("admin/", admin.site.urls),
    path("healthz", healthz),
    path("", include("profiles.api.urls")),  # the Profile API (/v1/spaces/…) and /api/v1/, before /v1/<call>
    path("", include("ingest.urls")),
]
