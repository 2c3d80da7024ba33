"""The webhook destination, as Segment's: each message POSTed as JSON with
`User-Agent: Segment.io/1.0` and `X-Signature`, the hex HMAC-SHA1 of the body with the shared
secret, to every URL (up to 5); delivered when any answers 2xx (the others are not retried)."""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

from destinations.adapters.base import (
    DELIVERED,
    RETRY,
    Adapter,
    Item,
    Outcome,
    SettingsError,
    dumps,
    http,
    judged,
    record,
)

MAX_URLS = 5


def signature(body: bytes, secret: str) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha1).hexdigest()


def check_url(url: Any, path: str) -> str:
    if not isinstance(url, str) or len(url) > 2000:
        raise SettingsError(path, "a URL (http:// or https://) of at most 2,000 characters.")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise SettingsError(path, f"{url[:100]!r} is not an http:// or https:// URL.")
    return url


class WebhookAdapter(Adapter):
    kind = "webhook"

    @staticmethod
    def check_settings(settings: Mapping[str, Any]) -> dict[str, Any]:
        if unknown := sorted(set(settings) - {"urls", "shared_secret"}):
            raise SettingsError(f"settings.{unknown[0]}", "unknown setting (a webhook takes urls and shared_secret).")
        urls = settings.get("urls")
        if not isinstance(urls, list) or not 1 <= len(urls) <= MAX_URLS:
            raise SettingsError("settings.urls", f"a list of 1 to {MAX_URLS} URLs.")
        secret = settings.get("shared_secret", "")
        if not isinstance(secret, str) or len(secret) > 500:
            raise SettingsError("settings.shared_secret", "a string of at most 500 characters.")
        return {"urls": [check_url(u, f"settings.urls[{i}]") for i, u in enumerate(urls)], "shared_secret": secret}

    def send(self, items: Sequence[Item]) -> dict[int, Outcome]:
        out: dict[int, Outcome] = {}
        urls: list[str] = list(self.settings.get("urls") or [])
        secret = str(self.settings.get("shared_secret") or "")
        for item in items:
            if time.monotonic() > self.deadline:
                break
            body = dumps(item.message)
            headers = {"X-Signature": signature(body, secret)} if secret else {}
            outcomes = [
                judged(http(self.session, "POST", url, body=body, headers=headers, timeout=self.timeout),
                       record("POST", url, body), what=url)
                for url in urls
            ]  # fmt: skip
            best = next((o for o in outcomes if o.status == DELIVERED), None)
            best = best or next((o for o in outcomes if o.status == RETRY), None) or outcomes[0]
            out[item.id] = best
            if best.status == RETRY:
                break  # the destination is failing: the rest wait with it
        return out

    def test_message(self) -> Item | None:
        return None
