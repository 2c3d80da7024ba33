"""Access-token authentication (HTTP Basic with the token as username, or `Authorization:
Bearer`), the read-only permission and the per-token rate limit. Kept apart from `base.py`:
DRF imports these from settings while it is still loading its views."""

from __future__ import annotations

import base64
import binascii
import logging
import time
from typing import Any

import redis
from django.conf import settings
from django.contrib.auth.models import AnonymousUser
from django.core.cache import cache
from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication
from rest_framework.permissions import SAFE_METHODS, BasePermission
from rest_framework.request import Request
from rest_framework.throttling import BaseThrottle

from profiles.models import AccessToken
from profiles.services.tokens import access_token_check

logger = logging.getLogger(__name__)

DEFAULT_RATE_LIMIT = 500  # requests per second per token (Segment: 100 per space)


def _credential(header: str) -> str | None:
    scheme, _, rest = header.strip().partition(" ")
    rest = rest.strip()
    if scheme.lower() == "bearer" and rest:
        return rest
    if scheme.lower() == "basic" and rest:
        try:
            decoded = base64.b64decode(rest, validate=True).decode()
        except (binascii.Error, UnicodeDecodeError, ValueError):
            return None
        return decoded.partition(":")[0]
    return None


class AccessTokenAuthentication(BaseAuthentication):
    """`curl -u $TOKEN:` (Segment's way) or `Authorization: Bearer $TOKEN`."""

    def authenticate(self, request: Request) -> tuple[Any, AccessToken] | None:
        header = request.META.get("HTTP_AUTHORIZATION", "")
        if not header:
            return None
        raw = _credential(header)
        token = access_token_check(raw=raw) if raw else None
        if token is None:
            raise exceptions.AuthenticationFailed("Invalid or revoked access token.")
        return AnonymousUser(), token

    def authenticate_header(self, request: Request) -> str:
        return 'Basic realm="cdp"'


class HasAccessToken(BasePermission):
    """A live access token: any may read; only one made with `--write` may change things."""

    message = "This access token is read-only: make one that may write (create_access_token NAME --write)."

    def has_permission(self, request: Request, view: Any) -> bool:
        if not isinstance(request.auth, AccessToken):
            raise exceptions.NotAuthenticated("An access token is required: HTTP Basic with the token as username.")
        return request.method in SAFE_METHODS or request.auth.can_write


_clients: dict[str, redis.Redis] = {}


def _redis() -> redis.Redis | None:
    """One client per process (made after gunicorn forks) for REDIS_URL; None without it.
    Its timeouts are the cache's (`CDP_REDIS_TIMEOUT`, 50 ms): a Redis that stalls costs a
    request that much, and the request is then served uncounted."""
    url = settings.REDIS_URL
    if not url:
        return None
    client = _clients.get(url)
    if client is None:
        timeout = float(settings.CDP_REDIS_TIMEOUT)
        client = _clients[url] = redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)
    return client


class TokenRateThrottle(BaseThrottle):
    """At most `CDP_API_RATE_LIMIT` requests per second per token (default 500), counted in
    the cache in one-second windows: with REDIS_URL set, across every web process; with the
    in-process cache, per process. Over it: 429 `rate_limit_error` with `Retry-After`."""

    def allow_request(self, request: Request, view: Any) -> bool:
        token = request.auth
        if not isinstance(token, AccessToken):
            return True
        limit = int(getattr(settings, "CDP_API_RATE_LIMIT", DEFAULT_RATE_LIMIT))
        now = time.time()
        self._wait = 1.0 - (now % 1.0)
        key = f"cdp:api-rate:{token.id}:{int(now)}"
        client = _redis()
        if client is None:  # the in-process cache: per process
            try:
                count = cache.incr(key)
            except ValueError:  # the first request of this second
                count = 1 if cache.add(key, 1, timeout=5) else cache.incr(key)
            return bool(count <= limit)
        try:  # one round trip; Django's cache would build a Redis client per call
            pipe = client.pipeline(transaction=False)
            pipe.incr(key)
            pipe.expire(key, 5)
            count, _ = pipe.execute()
        except redis.RedisError:
            logger.warning("Rate limit not counted: Redis is unavailable.", exc_info=True)
            return True  # a read API stays up without its counter
        return bool(count <= limit)

    def wait(self) -> float:
        return max(getattr(self, "_wait", 1.0), 0.001)
