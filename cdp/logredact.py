"""Secrets out of request logs: query values that authenticate (a write key, a webhook's
`?secret=`, a link's signature, a token), the pixel's `data` (it may carry the write key),
the password of credentials in a URL, and the Basic-auth username (a write key, or an access
token). Pure functions, used by gunicorn's access log (`cdp.gunicorn_logging`) and by
Django's development server log (`RedactRequestLine`)."""

from __future__ import annotations

import logging
import re
from urllib.parse import unquote_plus

REDACTED = "[redacted]"
# Parameter names (any case, `-` or `_` ignored) whose values are secrets, or may hold one.
_SECRET_NAME = re.compile(
    r"(^|_)(writekey|secret|token|accesstoken|sig|signature|password|passwd|pwd|apikey|key|auth|authorization"
    r"|credentials?|session|sessionid|code)$|^data$"
)
_USERINFO = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<user>[^:@/?#]*):(?P<password>[^@/?#]*)@")


def secret_parameter(name: str) -> bool:
    """Whether a query parameter named `name` carries a secret."""
    return bool(_SECRET_NAME.search(unquote_plus(name).lower().replace("-", "_").replace("__", "_")))


def query_redacted(query: str) -> str:
    """`query` (without `?`) with each secret parameter's value replaced, the rest as sent."""
    if not query:
        return query
    pairs = []
    for pair in query.split("&"):
        name, eq, _ = pair.partition("=")
        pairs.append(f"{name}={REDACTED}" if eq and secret_parameter(name) else pair)
    return "&".join(pairs)


def url_redacted(url: str) -> str:
    """A URL or request target without secret query values or a password in its userinfo."""
    url = _USERINFO.sub(lambda m: f"{m['scheme']}{m['user']}:{REDACTED}@", url)
    path, sep, rest = url.partition("?")
    if not sep:
        return path
    query, hash_, fragment = rest.partition("#")
    return f"{path}?{query_redacted(query)}{hash_}{fragment}"


def request_line_redacted(line: str) -> str:
    """`METHOD TARGET PROTOCOL` with the target redacted."""
    method, space, rest = line.partition(" ")
    target, space2, protocol = rest.rpartition(" ") if rest.count(" ") else (rest, "", "")
    return f"{method}{space}{url_redacted(target)}{space2}{protocol}"


class RedactRequestLine(logging.Filter):
    """For `django.server` (runserver), whose first argument is the request line."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and record.args and isinstance(record.args[0], str):
            record.args = (request_line_redacted(record.args[0]), *record.args[1:])
        return True
