"""Site-wide answers for what no view handles itself."""

from __future__ import annotations

import logging
from collections.abc import Callable

from django.http import HttpRequest, HttpResponse

from profiles.db import DATABASE_UNAVAILABLE, RETRY_AFTER_SECONDS

logger = logging.getLogger(__name__)


class DatabaseUnavailableMiddleware:
    """A page whose view meets the database away (the admin, mostly; the APIs answer in
    their own shapes first) answers a plain 503 with Retry-After instead of a 500: the
    server is fine, the database is not."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if not isinstance(exception, DATABASE_UNAVAILABLE):
            return None
        logger.warning("Database unavailable: %s %s answered 503.", request.method, request.path, exc_info=exception)
        return HttpResponse(
            "The database is unavailable right now. Try again in a moment.\n", status=503,
            content_type="text/plain; charset=utf-8", headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
        )  # fmt: skip
