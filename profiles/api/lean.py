"""The lean path of the Profile API's hot GET (`/traits`, one per page view of a personalised
site): what `ApiView` and DRF do for a GET, without DRF's machinery. The same token check,
the same rate limit with its fail-open, the same exception handler and so the same error
shapes, the same `Request-Id` and `Allow` headers, the same bytes of JSON. What it skips:
wrapping the request in DRF's `Request`, content negotiation (it takes only requests that
accept JSON; any other goes through DRF, which answers 406), the permission and throttle
classes' loops, and DRF's response rendering. A request it does not take (another method,
`?format=`, an `Accept` asking for something else or for indented JSON) goes through DRF.
What it cost is in docs/architecture.md ("The read APIs")."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from django.http import HttpRequest, HttpResponse
from rest_framework import exceptions

from profiles.api.auth import AUTHENTICATE_HEADER, rate_limit_allows, request_token
from profiles.api.base import api_exception_handler
from profiles.api.render import json_bytes

ALLOW = "GET, HEAD, OPTIONS"  # what DRF's `Allow` says of a view with only `get`


def takes(request: HttpRequest) -> bool:
    """Whether the lean path answers `request` exactly as DRF would: a GET that accepts
    compact JSON and does not ask for a format in the URL (DRF reads `?format=` first)."""
    if request.method != "GET" or "format" in request.GET:
        return False
    accept = request.META.get("HTTP_ACCEPT", "")
    return not accept or ("indent" not in accept and ("*/*" in accept or "application/json" in accept))


def serve(request: HttpRequest, body: Callable[[], dict[str, Any]]) -> HttpResponse:
    """Authenticate, count against the rate limit, and answer `body()` as JSON; any API error
    on the way as the exception handler shapes it. Raises what the handler leaves to Django
    (a bug: a 500)."""
    try:
        token = request_token(request.META)
        allowed, wait = rate_limit_allows(token)
        if not allowed:
            raise exceptions.Throttled(wait=max(wait, 0.001))
        response = HttpResponse(json_bytes(body()), content_type="application/json")
    except Exception as exc:
        if isinstance(exc, exceptions.NotAuthenticated | exceptions.AuthenticationFailed):
            exc.auth_header = AUTHENTICATE_HEADER  # as DRF's handle_exception sets it
        answer = api_exception_handler(exc, {"request": request})
        if answer is None:
            raise
        response = HttpResponse(json_bytes(answer.data), status=answer.status_code, content_type="application/json")
        for name in ("WWW-Authenticate", "Retry-After"):
            if name in answer:
                response[name] = answer[name]
    response["Allow"] = ALLOW
    response["Request-Id"] = uuid.uuid4().hex
    return response
