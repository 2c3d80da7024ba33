"""Tracked links: signing and checking, with no database and no clock.

A tracked link is `/v1/click?writeKey=…&url=…&ajs_uid=…&ajs_event=…&ajs_prop_x=…&sig=…`.
`sig` is an HMAC-SHA256, keyed by the source's signing secret, over every other
parameter in sorted order, so neither the target nor the identity can be changed. A link
without a valid signature redirects only to the source's allowed domains.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Mapping
from urllib.parse import urlencode, urlsplit

SIGNATURE_PARAM = "sig"
# 128 bits of the HMAC is plenty against forgery and keeps links short in emails.
_SIGNATURE_HEX_CHARS = 32


def _canonical(pairs: Iterable[tuple[str, str]]) -> bytes:
    kept = sorted((k, v) for k, v in pairs if k != SIGNATURE_PARAM)
    return urlencode(kept).encode()


def link_signature(pairs: Iterable[tuple[str, str]], secret: str) -> str:
    digest = hmac.new(secret.encode(), _canonical(pairs), hashlib.sha256).hexdigest()
    return digest[:_SIGNATURE_HEX_CHARS]


def link_signature_valid(pairs: Iterable[tuple[str, str]], secret: str, signature: str) -> bool:
    return hmac.compare_digest(link_signature(pairs, secret), signature or "")


def redirect_target_safe(url: str) -> bool:
    """Only absolute http(s) URLs: never `javascript:`, `data:` or a scheme-relative URL;
    and none where a browser and Python's `urlsplit` could disagree about the host. Browsers
    read a backslash as `/` and drop tabs and newlines (WHATWG URL), so
    `https://evil.example\\@shop.example/` goes to evil.example while urlsplit's host is
    shop.example; credentials before the host (`https://shop.example@evil.example/`) only
    mislead a reader. Such targets are refused whole."""
    before_query = url.split("?", 1)[0].split("#", 1)[0]  # browsers leave a query's backslashes alone
    if "\\" in before_query or any(ord(c) < 0x20 or ord(c) == 0x7F for c in url):
        return False
    parts = urlsplit(url)
    return parts.scheme in ("http", "https") and bool(parts.hostname) and "@" not in parts.netloc


def domain_allowed(url: str, domains: Iterable[str]) -> bool:
    """The URL's host is one of `domains`, or a subdomain of one."""
    host = (urlsplit(url).hostname or "").lower().rstrip(".")
    return bool(host) and any(host == d or host.endswith("." + d) for d in domains)


def tracked_link_params(
    *,
    write_key: str,
    secret: str,
    url: str,
    user_id: str | None = None,
    anonymous_id: str | None = None,
    event: str | None = None,
    properties: Mapping[str, str] | None = None,
    traits: Mapping[str, str] | None = None,
) -> list[tuple[str, str]]:
    """The signed query parameters of a tracked link, in a stable order."""
    if not redirect_target_safe(url):
        raise ValueError(f"The target must be an absolute http(s) URL, not {url!r}.")
    pairs = [("writeKey", write_key), ("url", url)]
    if user_id:
        pairs.append(("ajs_uid", user_id))
    if anonymous_id:
        pairs.append(("ajs_aid", anonymous_id))
    if event:
        pairs.append(("ajs_event", event))
    pairs += [(f"ajs_prop_{k}", str(v)) for k, v in (properties or {}).items()]
    pairs += [(f"ajs_trait_{k}", str(v)) for k, v in (traits or {}).items()]
    pairs.append((SIGNATURE_PARAM, link_signature(pairs, secret)))
    return pairs


def tracked_link_url(base_url: str, pairs: list[tuple[str, str]]) -> str:
    return base_url.rstrip("/") + "/v1/click?" + urlencode(pairs)
