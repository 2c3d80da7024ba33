"""The tracking API, pixel and tracked-link endpoints. Thin: parse, call a service, shape.

These are Segment's protocol, not our REST API, so they are plain Django views: no
DRF negotiation on the hottest path. CORS is answered by django-cors-headers.

When the database is away (`DATABASE_UNAVAILABLE`) nothing is stored and each endpoint says
so in its own way: the tracking API and webhooks answer Segment's `{"code", "message"}` with
503 and `Retry-After`; the pixel still answers its GIF (the miss is counted in the cache);
a tracked link answers a plain 503 page, never a redirect it could not verify. A body over
Django's 5 MB guard answers the API's JSON 400 `payload_too_large`, and is counted in the
debugger.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Callable
from functools import wraps

import orjson
from django.conf import settings
from django.core.exceptions import RequestDataTooBig, TooManyFieldsSent
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt

from ingest import missed, services, webhooks
from ingest.messages import MAX_REQUEST_BYTES
from profiles.db import DATABASE_UNAVAILABLE, RETRY_AFTER_SECONDS

logger = logging.getLogger(__name__)
View = Callable[..., HttpResponse]

# The short paths analytics.js 2.0 posts to, and /v1/import, analytics-android's batch path.
ENDPOINTS = {
    "identify": "identify", "track": "track", "page": "page", "screen": "screen", "group": "group",
    "alias": "alias", "batch": "batch", "import": "batch",
    "i": "identify", "t": "track", "p": "page", "s": "screen", "g": "group", "a": "alias", "b": "batch",
}  # fmt: skip

_GIF = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")
_NO_CACHE = {"Cache-Control": "no-cache, no-store, must-revalidate, private, max-age=0", "Pragma": "no-cache",
             "Expires": "0"}  # fmt: skip


def _json(status: int, body: dict[str, object]) -> HttpResponse:
    return HttpResponse(orjson.dumps(body), status=status, content_type="application/json")


def _client(request: HttpRequest) -> tuple[str | None, str | None]:
    return request.META.get("REMOTE_ADDR"), request.META.get("HTTP_USER_AGENT")


def _unavailable_json(request: HttpRequest) -> HttpResponse:
    response = _json(503, {
        "code": "service_unavailable",
        "message": f"The database is unavailable, so nothing was stored. Retry after {RETRY_AFTER_SECONDS} seconds.",
    })  # fmt: skip
    response["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return response


def _too_large_json(request: HttpRequest, source_id: int | None, exc: Exception) -> HttpResponse:
    """A body past Django's guards (DATA_UPLOAD_MAX_MEMORY_SIZE, 5 MB, or more form fields
    than DATA_UPLOAD_MAX_NUMBER_FIELDS): the API's 400, kept in the debugger (of the source
    the request names, when it names one). The tracking API's own limit is 500 KB."""
    endpoint = request.path.removeprefix("/v1/")[:40]
    if isinstance(exc, TooManyFieldsSent):
        message = f"Exceed payload limit: the form has more than {settings.DATA_UPLOAD_MAX_NUMBER_FIELDS} fields."
    else:
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE if endpoint.startswith("webhooks/") else MAX_REQUEST_BYTES
        message = f"Exceed payload limit: the body is over {limit} bytes."
    services.body_too_large_record(
        endpoint=endpoint,
        write_key=services.write_key_from_authorization(request.META.get("HTTP_AUTHORIZATION")),
        source_id=source_id,
        received_at=timezone.now(),
        reason=message,
        size=request.META.get("CONTENT_LENGTH") or "unknown",
        client=request.META.get("REMOTE_ADDR"),
    )
    return _json(400, {"code": "payload_too_large", "message": message})


def _answers_outages(unavailable: Callable[[HttpRequest], HttpResponse]) -> Callable[[View], View]:
    """The view answers `unavailable(request)` when the database is away, and a body too
    large for Django with the API's JSON 400."""

    def decorate(view: View) -> View:
        @wraps(view)
        def wrapped(request: HttpRequest, *args: object, **kwargs: object) -> HttpResponse:
            try:
                return view(request, *args, **kwargs)
            except DATABASE_UNAVAILABLE:
                logger.warning("Database unavailable: %s %s answered 503.", request.method, request.path, exc_info=True)
                return unavailable(request)
            except (RequestDataTooBig, TooManyFieldsSent) as exc:
                source_id = kwargs.get("source_id")
                try:
                    return _too_large_json(request, source_id if isinstance(source_id, int) else None, exc)
                except DATABASE_UNAVAILABLE:
                    return unavailable(request)

        return wrapped

    return decorate


@csrf_exempt
@_answers_outages(_unavailable_json)
def tracking(request: HttpRequest, path: str) -> HttpResponse:
    """POST /v1/<identify|track|page|screen|group|alias|batch|import|i|t|p|s|g|a|b>."""
    endpoint = ENDPOINTS.get(path)
    if endpoint is None:
        return _json(404, {"code": "not_found", "message": f"There is no endpoint /v1/{path[:40]}."})
    if request.method != "POST":
        return _json(405, {"code": "method_not_allowed", "message": "Use POST."})
    outcome = services.tracking_ingest(
        raw=request.body,
        endpoint=endpoint,
        received_at=timezone.now(),
        header_write_key=services.write_key_from_authorization(request.META.get("HTTP_AUTHORIZATION")),
        content_encoding=request.META.get("HTTP_CONTENT_ENCODING"),
        client=request.META.get("REMOTE_ADDR"),
    )
    response = _json(outcome.status, outcome.body)
    if outcome.status == 401:
        response["WWW-Authenticate"] = 'Basic realm="write key"'
    return response


def _gif() -> HttpResponse:
    return HttpResponse(_GIF, content_type="image/gif", headers=_NO_CACHE)


def pixel(request: HttpRequest, method: str) -> HttpResponse:
    """GET /v1/pixel/<method>: always a 1x1 GIF that no cache keeps; problems go to the
    ingest debugger, never to the mail client. With the database away, the call is counted
    as missed (in the cache, when it answers) and the GIF is answered all the same."""
    ip, user_agent = _client(request)
    received_at = timezone.now()
    try:
        services.pixel_ingest(
            method=method, params=dict(request.GET.lists()), received_at=received_at, ip=ip, user_agent=user_agent
        )
    except DATABASE_UNAVAILABLE:
        logger.warning("Database unavailable: a pixel call was answered without being stored.", exc_info=True)
        missed.missed_count(endpoint="pixel", at=received_at)
    return _gif()


def _click_unavailable(request: HttpRequest) -> HttpResponse:
    return HttpResponse(
        "This link cannot be followed right now: the service is briefly unavailable. Try again in a moment.\n",
        status=503, content_type="text/plain", headers={**_NO_CACHE, "Retry-After": str(RETRY_AFTER_SECONDS)},
    )  # fmt: skip


@_answers_outages(_click_unavailable)
def click(request: HttpRequest) -> HttpResponse:
    """GET /v1/click: record the click, then 302 to a signed or allowed target, or 400."""
    ip, user_agent = _client(request)
    target, outcome = services.click_ingest(
        params=dict(request.GET.lists()), received_at=timezone.now(), ip=ip, user_agent=user_agent
    )
    if target is None:
        message = outcome.body.get("message", "This link is not valid.")
        return HttpResponse(f"This link is not valid: {message}\n", status=400, content_type="text/plain",
                            headers=_NO_CACHE)  # fmt: skip
    return HttpResponseRedirect(target, headers=_NO_CACHE)


@csrf_exempt
@_answers_outages(_unavailable_json)
def webhook(request: HttpRequest, provider: str, source_id: int) -> HttpResponse:
    """POST /v1/webhooks/<provider>/<source id>: an email provider's events (GET and HEAD
    answer the URL checks of Mailchimp and Mandrill)."""
    outcome = webhooks.webhook_ingest(
        request=request, provider=provider, source_id=source_id, received_at=timezone.now()
    )
    response = _json(outcome.status, outcome.body)
    for name, value in outcome.headers.items():
        response[name] = value
    return response
