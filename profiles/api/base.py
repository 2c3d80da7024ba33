"""What every read API view shares: access-token auth (HTTP Basic with the token as username,
or `Authorization: Bearer`), read-only permission, the per-token rate limit, the one error
shape `{"error": {"code", "message"}}`, and the `Request-Id` header."""

from __future__ import annotations

import logging
import uuid
from typing import Any

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.http import Http404, HttpRequest
from rest_framework import exceptions, serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from profiles.api.auth import AccessTokenAuthentication, HasAccessToken, TokenRateThrottle
from profiles.api.render import OrjsonRenderer
from profiles.db import DATABASE_UNAVAILABLE, RETRY_AFTER_SECONDS

logger = logging.getLogger(__name__)

_CODES = {
    400: "validation_error",
    401: "authentication_error",
    403: "authentication_error",
    404: "not_found",
    405: "invalid_request_error",
    406: "invalid_request_error",
    415: "invalid_request_error",
    429: "rate_limit_error",
    503: "service_unavailable",
}


class DatabaseUnavailable(exceptions.APIException):
    status_code = 503
    default_detail = f"The database is unavailable. Retry after {RETRY_AFTER_SECONDS} seconds."
    default_code = "service_unavailable"


def _message(detail: Any) -> str:
    """DRF's error detail as one line, each message after the JSON path of its field
    (`where[0].op: "≈" is not a valid choice.`)."""
    return "; ".join(_flatten(detail, ""))


def _flatten(detail: Any, path: str) -> list[str]:
    if isinstance(detail, dict):  # a nested list's errors are keyed by index
        return [
            line
            for key, value in detail.items()
            for line in _flatten(value, f"{path}[{key}]" if isinstance(key, int) else f"{path}.{key}" if path else key)
        ]
    if isinstance(detail, list):
        if all(not isinstance(item, dict | list) for item in detail):
            text = " ".join(str(item) for item in detail)
            return [f"{path}: {text}" if path else text]
        return [line for i, item in enumerate(detail) if item for line in _flatten(item, f"{path}[{i}]")]
    return [f"{path}: {detail}" if path else str(detail)]


def api_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """Every API error as `{"error": {"code", "message"}}` (the Segment Profile API's shape).
    The database away (refused, lost, timed out) is a 503 `service_unavailable` with
    Retry-After. Anything else not an API error is left to Django (a 500, which is a bug)."""
    if isinstance(exc, DATABASE_UNAVAILABLE):
        logger.warning("Database unavailable: %s answered 503.", context.get("request"), exc_info=exc)
        exc = DatabaseUnavailable()
    elif isinstance(exc, Http404):
        exc = exceptions.NotFound(str(exc) or "Not found.")
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied()
    if not isinstance(exc, exceptions.APIException):
        return None
    headers: dict[str, str] = {}
    if getattr(exc, "auth_header", None):
        headers["WWW-Authenticate"] = exc.auth_header
    if getattr(exc, "wait", None):
        headers["Retry-After"] = str(max(1, round(exc.wait)))
    if isinstance(exc, DatabaseUnavailable):
        headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
    code = _CODES.get(exc.status_code, "invalid_request_error")
    if isinstance(exc, exceptions.Throttled):
        message = "Too many requests for this access token; retry after the Retry-After seconds."
    else:
        message = _message(exc.detail)
    return Response({"error": {"code": code, "message": message}}, status=exc.status_code, headers=headers)


class ApiView(APIView):
    authentication_classes = [AccessTokenAuthentication]
    permission_classes = [HasAccessToken]
    throttle_classes = [TokenRateThrottle]
    renderer_classes = [OrjsonRenderer]

    def finalize_response(self, request: Request, response: Any, *args: Any, **kwargs: Any) -> Any:
        response = super().finalize_response(request, response, *args, **kwargs)
        response["Request-Id"] = uuid.uuid4().hex
        return response


def query(serializer_class: type, request: Request | HttpRequest) -> dict[str, Any]:
    """Validated query parameters, or a 400 `validation_error` naming the bad one. An unknown
    parameter is refused too: a misspelt filter must not silently return everything."""
    params = request.query_params if isinstance(request, Request) else request.GET
    # A plain dict, not the QueryDict: DRF reads an empty `?next=` from a form as absent, and
    # the schema promises that an empty value is refused. One serializer per request: each
    # instance deep-copies its fields.
    data: dict[str, Any] = {}
    serializer = serializer_class(data=data)
    fields = serializer.fields
    unknown = sorted(set(params) - set(fields))
    if unknown:
        raise serializers.ValidationError({name[:40]: "Unknown query parameter." for name in unknown[:5]})
    for key in params:
        many = isinstance(fields[key], serializers.MultipleChoiceField)
        data[key] = params.getlist(key) if many else params.get(key)
    serializer.is_valid(raise_exception=True)
    return dict(serializer.validated_data)
