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
AUTHENTICATE_HEADER = 'Basic realm="cdp"'  # the WWW-Authenticate of a 401
TOKEN_REQUIRED = "An access token is required: HTTP Basic with the token as username."
TOKEN_REFUSED = "Invalid or revoked access token."


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


def _header_token(header: str) -> AccessToken:
    raw = _credential(header)
    token = access_token_check(raw=raw) if raw else None
    if token is None:
        raise exceptions.AuthenticationFailed(TOKEN_REFUSED)
    return token


def request_token(meta: dict[str, Any]) -> AccessToken:
    """The live access token of a request's headers (`request.META`): what the authentication
    and the permission below check, in one call, for the lean path (`lean.py`). Raises
    NotAuthenticated without an Authorization header, AuthenticationFailed for anything but
    a live token."""
    header = meta.get("HTTP_AUTHORIZATION", "")
    if not header:
        raise exceptions.NotAuthenticated(TOKEN_REQUIRED)
    return _header_token(header)


class AccessTokenAuthentication(BaseAuthentication):
    """`curl -u $TOKEN:` (Segment's way) or `Authorization: Bearer $TOKEN`."""

    def authenticate(self, request: Request) -> tuple[Any, AccessToken] | None:
        header = request.META.get("HTTP_AUTHORIZATION", "")
        if not header:
            return None
        return AnonymousUser(), _header_token(header)

    def authenticate_header(self, request: Request) -> str:
        return AUTHENTICATE_HEADER


class HasAccessToken(BasePermission):
    """A live access token: any may read; only one made with `--write` may change things."""

    message = "This access token is read-only: make one that may write (create_access_token NAME --write)."

    def has_permission(self, request: Request, view: Any) -> bool:
        if not isinstance(request.auth, AccessToken):
            raise exceptions.NotAuthenticated(TOKEN_REQUIRED)
        return request.method in SAFE_METHODS or request.auth.can_write


# Counts a request in its window: INCR, and EXPIRE on the window's first request. One
# command, so one round trip and less client work than a pipeline of INCR and EXPIRE (redis-py
# runs EVALSHA, and loads the script once per Redis if it is not there).
_COUNT_SCRIPT = (
    "local n = redis.call('INCR', KEYS[1]) if n == 1 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end return n"
)
WINDOW_KEY_SECONDS = 5  # a window's key outlives its second; Redis drops it after this

_clients: dict[str, tuple[redis.Redis, Any]] = {}


def _redis(url: str) -> tuple[redis.Redis, Any]:
    """One client per process (made after gunicorn forks) for `url`, with the counting script.
    Its timeouts are the cache's (`CDP_REDIS_TIMEOUT`, 50 ms): a Redis that stalls costs a
    request that much, and the request is then served uncounted. Raises RedisError when it
    cannot connect (nothing is kept then)."""
    found = _clients.get(url)
    if found is None:
        timeout = float(settings.CDP_REDIS_TIMEOUT)
        # One connection held, not one taken from the pool and given back per command
        # (redis-py locks it for a gthread worker's threads).
        client = redis.Redis.from_url(
            url, socket_timeout=timeout, socket_connect_timeout=timeout, single_connection_client=True
        )
        found = _clients[url] = (client, client.register_script(_COUNT_SCRIPT))
    return found


def rate_limit_allows(token: AccessToken) -> tuple[bool, float]:
    """Whether `token` may make one more request in this one-second window (counting it), and
    the seconds until the next window. At most `CDP_API_RATE_LIMIT` per second (default 500):
    with REDIS_URL set, counted across every web process in one round trip; with the
    in-process cache, per process. Redis down or stalled: allowed, uncounted, with a warning."""
    limit = int(getattr(settings, "CDP_API_RATE_LIMIT", DEFAULT_RATE_LIMIT))
    now = time.time()
    wait = 1.0 - (now % 1.0)
    key = f"cdp:api-rate:{token.id}:{int(now)}"
    if not settings.REDIS_URL:  # the in-process cache: per process
        try:
            count = cache.incr(key)
        except ValueError:  # the first request of this second
            count = 1 if cache.add(key, 1, timeout=WINDOW_KEY_SECONDS) else cache.incr(key)
        return bool(count <= limit), wait
    try:  # the client connects when it is made
        count = _redis(settings.REDIS_URL)[1](keys=[key], args=[WINDOW_KEY_SECONDS])
    except redis.RedisError:
        logger.warning("Rate limit not counted: Redis is unavailable.", exc_info=True)
        return True, wait  # a read API stays up without its counter
    return bool(count <= limit), wait


class TokenRateThrottle(BaseThrottle):
    """`rate_limit_allows` as DRF's throttle. Over it: 429 `rate_limit_error` with `Retry-After`."""

    def allow_request(self, request: Request, view: Any) -> bool:
        token = request.auth
        if not isinstance(token, AccessToken):
            return True
        allowed, self._wait = rate_limit_allows(token)
        return allowed

    def wait(self) -> float:
        return max(getattr(self, "_wait", 1.0), 0.001)
