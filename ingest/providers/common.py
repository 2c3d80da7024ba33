"""What every provider's parser shares: the Segment email message it builds, the stable
message id, the passthrough user id, and the machine-open / bot-click check. Pure."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

# Segment's email spec (segment-spec §9) plus the provider-specific ones.
SENT = "Email Sent"
DELIVERED = "Email Delivered"
OPENED = "Email Opened"
CLICKED = "Email Link Clicked"
BOUNCED = "Email Bounced"
SPAM = "Email Marked as Spam"
UNSUBSCRIBED = "Unsubscribed"
SUBSCRIBED = "Email Subscribed"
DROPPED = "Email Dropped"
DEFERRED = "Email Deferred"
BLOCKED = "Email Blocked"
FAILED = "Email Failed"
AUTORESPONDED = "Email Auto Responded"
REPLIED = "Email Replied"
UNKNOWN = "Email Event"

# The keys a send may carry our user id in (custom args, metadata, variables, payload).
USER_ID_KEYS = ("cdp_user_id", "user_id", "userId")
# Keys whose values name the campaign when the provider has no campaign field of its own.
CAMPAIGN_KEYS = ("campaign", "campaign_name", "cdp_campaign")
# Our message ids are at most this long (ingest.messages.MAX_MESSAGE_ID_CHARS).
_ID_HASH_CHARS = 40


class PayloadError(Exception):
    """The provider's body cannot be read: the request is refused with 400."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def stable_message_id(provider: str, *parts: Any) -> str:
    """A message id that is the same every time the provider redelivers the same event:
    a hash of the provider's event key, so any length or alphabet fits our 100 chars."""
    key = "\x1f".join("" if p is None else str(p) for p in parts)
    return f"{provider}-{hashlib.sha256(key.encode()).hexdigest()[:_ID_HASH_CHARS]}"


def passthrough_user_id(metadata: Mapping[str, Any] | None) -> str | None:
    """Our user id carried through the send, if the sender put one in."""
    for key in USER_ID_KEYS:
        value = (metadata or {}).get(key)
        if isinstance(value, str) and value.strip():
            return value.strip()
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)
    return None


def first_text(*values: Any) -> str | None:
    """The first value that is a non-empty string or a number, as a string."""
    for value in values:
        if isinstance(value, bool) or value is None:
            continue
        if isinstance(value, int | float):
            return str(value)
        if isinstance(value, str) and value.strip():
            return value.strip()
    return None


def truthy(value: Any) -> bool:
    """Providers say yes as true, "true", 1 or "1"."""
    if isinstance(value, str):
        return value.strip().lower() in ("true", "1", "yes")
    return bool(value) and value is not None


@lru_cache(maxsize=1)
def _crawler_detect() -> Any:
    from crawlerdetect import CrawlerDetect  # its pattern list compiles once, on first use

    return CrawlerDetect()


@lru_cache(maxsize=4096)  # a campaign's opens come from few distinct agents
def _ua_is_machine(user_agent: str) -> bool:
    return bool(_crawler_detect().isCrawler(user_agent))


def machine_user_agent(user_agent: Any) -> bool:
    """A user agent of a privacy proxy, image cache or link scanner (crawlerdetect's list),
    not of a person. Used when the provider gives no flag of its own. A value that is not
    text (a provider's odd body) is no agent at all, never an error."""
    return isinstance(user_agent, str) and bool(user_agent.strip()) and _ua_is_machine(user_agent)


def iso(at: datetime | None) -> str | None:
    if at is None:
        return None
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    return at.astimezone(UTC).isoformat()


def from_unix(value: Any) -> datetime | None:
    if isinstance(value, bool):
        return None
    try:
        return datetime.fromtimestamp(float(value), tz=UTC)
    except (TypeError, ValueError, OverflowError, OSError):
        return None


def email_message(
    *,
    message_id: str,
    event: str,
    email: str | None,
    user_id: str | None,
    timestamp: datetime | None,
    provider: str,
    provider_event: str,
    properties: Mapping[str, Any],
    raw: Any,
    ip: str | None = None,
    user_agent: str | None = None,
    anonymous_id: str | None = None,
) -> dict[str, Any]:
    """A Segment `track` for one email event: the recipient in `context.traits.email`
    (identity resolution attaches the event to that person), our user id as `userId`, the
    provider's raw type and fields kept under `properties.provider_event` and `.raw`."""
    context: dict[str, Any] = {"traits": {"email": email}} if email else {}
    if ip:
        context["ip"] = ip
    if user_agent:
        context["userAgent"] = user_agent
    props = {k: v for k, v in properties.items() if v is not None}
    props["provider"] = provider
    props["provider_event"] = provider_event
    props["raw"] = raw
    message: dict[str, Any] = {
        "type": "track",
        "messageId": message_id,
        "event": event,
        "properties": props,
        "context": context,
    }
    if user_id:
        message["userId"] = user_id
    if anonymous_id:
        message["anonymousId"] = anonymous_id
    if timestamp is not None:
        message["timestamp"] = iso(timestamp)
    return message
