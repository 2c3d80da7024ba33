"""Site-wide answers for what no view handles itself."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, cast

from django.conf import settings
from django.core.handlers.base import BaseHandler
from django.core.handlers.exception import convert_exception_to_response
from django.http import HttpRequest, HttpResponse
from django.utils.module_loading import import_string

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


class ShortChainMiddleware:
    """First in MIDDLEWARE: machine traffic under /v1/ (the tracking edge and the Profile API)
    goes through a chain of only the middleware it needs (`MACHINE_MIDDLEWARE`: security
    headers, CORS for the edge, Host validation, the 503 page), not the session, CSRF, auth,
    messages and static-file middleware the admin needs. No view under /v1/ reads a session,
    a user or a message, and each is exempt from CSRF (token or write-key auth, no cookies).
    Measured: the six skipped cost ~12% of a Profile API lookup (bench/lookup.py)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response
        self.machine = _Chain(settings.MACHINE_MIDDLEWARE)

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.path_info.startswith(MACHINE_PREFIX):
            return self.machine(request)
        return self.get_response(request)


MACHINE_PREFIX = "/v1/"


class _Chain(BaseHandler):
    """Django's request handling (URL resolution, view middleware, the view, exception
    middleware) under the given middleware, built as `BaseHandler.load_middleware` builds
    settings.MIDDLEWARE, for synchronous middleware."""

    def __init__(self, paths: list[str]) -> None:
        super().__init__()
        self._view_middleware: list[Any] = []
        self._template_response_middleware: list[Any] = []
        self._exception_middleware: list[Any] = []
        handler = convert_exception_to_response(self._get_response)  # type: ignore[attr-defined]
        for path in reversed(paths):
            middleware = import_string(path)(handler)
            if hasattr(middleware, "process_view"):
                self._view_middleware.insert(0, middleware.process_view)
            if hasattr(middleware, "process_template_response"):
                self._template_response_middleware.append(middleware.process_template_response)
            if hasattr(middleware, "process_exception"):
                self._exception_middleware.append(middleware.process_exception)
            handler = convert_exception_to_response(middleware)
        self._middleware_chain = handler

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return cast(HttpResponse, self._middleware_chain(request))  # synchronous: never an awaitable
