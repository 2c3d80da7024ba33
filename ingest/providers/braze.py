"""Braze Currents (custom HTTP connector) to Segment messages. Pure.

The body is `{"events": [{"event_type", "id", "time", "properties": {...}, "user":
{"user_id", "external_user_id", ...}}, ...]}`. Email events are `users.messages.email.*`;
other Currents events are kept under their own type as the event name."""

from __future__ import annotations

from typing import Any

from ingest.providers import common as c

_PREFIX = "users.messages.email."
_EVENTS = {
    "Send": c.SENT, "Delivery": c.DELIVERED, "Open": c.OPENED, "Click": c.CLICKED, "Bounce": c.BOUNCED,
    "SoftBounce": c.BOUNCED, "MarkAsSpam": c.SPAM, "Unsubscribe": c.UNSUBSCRIBED, "Deferral": c.DEFERRED,
    "Retry": c.DEFERRED, "Abort": c.DROPPED,
}  # fmt: skip
# Braze's own names for the fields that Segment's email spec names otherwise.
_KEEP = ("campaign_id", "campaign_name", "canvas_id", "canvas_name", "canvas_step_id", "message_variation_id",
         "message_variation_name", "send_id", "dispatch_id", "link_id", "link_alias", "bounce_reason",
         "is_drop", "app_group_id")  # fmt: skip


def messages_from_braze(body: Any) -> list[dict[str, Any]]:
    if not isinstance(body, dict) or not isinstance(body.get("events"), list):
        raise c.PayloadError('A Braze Currents body is {"events": [...]}.')
    messages = []
    for index, event in enumerate(body["events"]):
        if not isinstance(event, dict) or not isinstance(event.get("event_type"), str):
            raise c.PayloadError(f"Braze event {index} needs an `event_type`.")
        kind = event["event_type"]
        props: dict[str, Any] = event["properties"] if isinstance(event.get("properties"), dict) else {}
        user: dict[str, Any] = event["user"] if isinstance(event.get("user"), dict) else {}
        short = kind[len(_PREFIX) :] if kind.startswith(_PREFIX) else None
        name = _EVENTS.get(short or "", c.UNKNOWN if short else kind)
        properties: dict[str, Any] = {k: props.get(k) for k in _KEEP}
        properties["email_id"] = c.first_text(props.get("dispatch_id"), props.get("send_id"))
        properties["campaign_name"] = c.first_text(props.get("campaign_name"), props.get("canvas_name"))
        properties["campaign_id"] = c.first_text(props.get("campaign_id"), props.get("canvas_id"))
        if name == c.CLICKED:
            properties["link_url"] = c.first_text(props.get("url"))
            flag = props.get("is_suspected_bot_click")
            properties["bot_click"] = c.truthy(flag) if flag is not None else c.machine_user_agent(
                props.get("user_agent"))  # fmt: skip
        if name == c.OPENED:
            flag = props.get("machine_open")
            properties["machine_open"] = c.truthy(flag) if flag is not None else c.machine_user_agent(
                props.get("user_agent"))  # fmt: skip
        if name == c.BOUNCED:
            properties["bounce_type"] = "soft" if short == "SoftBounce" else "hard"
        event_id = c.first_text(event.get("id"))
        messages.append(
            c.email_message(
                message_id=c.stable_message_id("braze", event_id)
                if event_id
                else c.stable_message_id(
                    "braze", kind, user.get("user_id"), event.get("time"), props.get("dispatch_id")
                ),
                event=name,
                email=c.first_text(props.get("email_address")),
                user_id=c.first_text(user.get("external_user_id")),
                timestamp=c.from_unix(event.get("time")),
                provider="braze",
                provider_event=kind,
                properties=properties,
                raw=event,
                user_agent=c.first_text(props.get("user_agent")),
                anonymous_id=c.first_text(user.get("user_id")),  # Braze's own id, as its Segment source does
            )
        )
    return messages
