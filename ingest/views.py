"""The tracking API, pixel and tracked-link endpoints. Thin: parse, call a service, shape.

These are Segment's protocol, not our REST API, so they are plain Django views: no
DRF negotiation on the hottest path. CORS is answered by django-cors-headers.
"""

from __future__ import annotations

import base64

import orjson
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt

from ingest import services, webhooks

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


@csrf_exempt
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


def pixel(request: HttpRequest, method: str) -> HttpResponse:
    """GET /v1/pixel/<method>: always a 1x1 GIF that no cache keeps; problems go to the
    ingest debugger, never to the mail client."""
    ip, user_agent = _client(request)
    services.pixel_ingest(
        method=method, params=dict(request.GET.lists()), received_at=timezone.now(), ip=ip, user_agent=user_agent
    )
    return HttpResponse(_GIF, content_type="image/gif", headers=_NO_CACHE)


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
