"""django-anymail's normalised tracking events (Mailjet, SendGrid, Mailgun, Mandrill,
Postmark) to Segment email messages. Pure: anymail has already parsed the provider's
body into `AnymailTrackingEvent`s, each with the provider's raw event in `esp_event`;
this adds what anymail does not normalise (campaign, subject, hard or soft bounce, the
provider's machine-open flag, a stable event key) per provider."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ingest.providers import common as c

# Anymail's vocabulary (anymail.signals.EventType) to Segment event names.
_BY_ANYMAIL_TYPE = {
    "queued": c.SENT, "sent": c.SENT, "delivered": c.DELIVERED, "opened": c.OPENED, "clicked": c.CLICKED,
    "bounced": c.BOUNCED, "deferred": c.DEFERRED, "rejected": c.DROPPED, "failed": c.FAILED,
    "complained": c.SPAM, "unsubscribed": c.UNSUBSCRIBED, "subscribed": c.SUBSCRIBED,
    "autoresponded": c.AUTORESPONDED,
}  # fmt: skip


@dataclass(frozen=True, slots=True)
class Details:
    """What one provider's raw event says beyond anymail's normalised fields."""

    provider_event: str
    key: tuple[Any, ...]  # the provider's event identity; hashed into the message id
    email_id: str | None = None
    email_subject: str | None = None
    campaign_id: str | None = None
    campaign_name: str | None = None
    list_id: str | None = None
    bounce_type: str | None = None  # "hard" or "soft"
    machine: bool | None = None  # the provider's own machine-open / bot-click flag, if any
    ip: str | None = None
    event: str | None = None  # a provider-specific event name, over anymail's mapping
    extra: Mapping[str, Any] | None = None


def _mailjet(e: Mapping[str, Any], meta: Mapping[str, Any]) -> Details:
    kind = str(e.get("event"))
    campaign = e.get("mj_campaign_id")
    hard = e.get("hard_bounce")
    return Details(
        provider_event=kind,
        key=(kind, e.get("MessageID"), e.get("time"), e.get("url")),
        email_id=c.first_text(e.get("MessageID")),
        campaign_id=c.first_text(campaign) if campaign not in (0, "0", None) else None,
        campaign_name=c.first_text(e.get("customcampaign"), e.get("CustomID")),
        list_id=c.first_text(e.get("mj_list_id")),
        bounce_type=None if kind != "bounce" else ("hard" if c.truthy(hard) else "soft"),
        ip=c.first_text(e.get("ip")),
        event=c.BLOCKED if kind == "blocked" else None,
        extra={"custom_id": c.first_text(e.get("CustomID")), "payload": e.get("Payload") or None},
    )


def _sendgrid(e: Mapping[str, Any], meta: Mapping[str, Any]) -> Details:
    kind = str(e.get("event"))
    bounce_kind = e.get("type")
    event = None
    if kind == "bounce" and bounce_kind == "blocked":
        event = c.BLOCKED
    categories = e.get("category")
    return Details(
        provider_event=kind,
        key=(e.get("sg_event_id"),) if e.get("sg_event_id") else (kind, e.get("sg_message_id"), e.get("timestamp")),
        email_id=c.first_text(e.get("sg_message_id"), e.get("smtp-id")),
        campaign_id=c.first_text(e.get("marketing_campaign_id"), e.get("singlesend_id")),
        campaign_name=c.first_text(
            e.get("marketing_campaign_name"), e.get("singlesend_name"), *(meta.get(k) for k in c.CAMPAIGN_KEYS)
        ),
        list_id=c.first_text(e.get("asm_group_id")) if "unsubscribe" in kind else None,
        bounce_type="hard" if kind == "bounce" and bounce_kind != "blocked" else None,
        machine=c.truthy(e["sg_machine_open"]) if "sg_machine_open" in e else None,
        ip=c.first_text(e.get("ip")) if kind in ("open", "click") else None,
        event=event,
        extra={"categories": categories if isinstance(categories, list) else [categories] if categories else None},
    )


def _mailgun(body: Mapping[str, Any], meta: Mapping[str, Any]) -> Details:
    e = body.get("event-data") or {}
    kind = str(e.get("event"))
    headers = (e.get("message") or {}).get("headers") or {}
    client = e.get("client-info") or {}
    campaigns = e.get("campaigns") or []
    first_campaign = campaigns[0] if campaigns and isinstance(campaigns[0], dict) else {}
    tags = e.get("tags") or []
    severity = e.get("severity")
    return Details(
        provider_event=kind if kind != "failed" else f"failed:{severity or 'unknown'}",
        # `id` is unique within a day; with the exact timestamp it is unique for good.
        key=(e.get("id"), e.get("timestamp")),
        email_id=c.first_text(headers.get("message-id")),
        email_subject=c.first_text(headers.get("subject")),
        campaign_id=c.first_text(first_campaign.get("id")),
        campaign_name=c.first_text(
            first_campaign.get("name"), *(meta.get(k) for k in c.CAMPAIGN_KEYS), *(tags[:1] if tags else [])
        ),
        bounce_type=("hard" if severity == "permanent" else "soft") if kind == "failed" else None,
        # `bot` names the proxy or scanner ("apple", "gmail", "generic"), empty for a person.
        machine=bool(client["bot"]) and str(client["bot"]).lower() not in ("false", "0") if "bot" in client else None,
        ip=c.first_text(e.get("ip")),
        extra={"tags": tags or None},
    )


def _mandrill(e: Mapping[str, Any], meta: Mapping[str, Any]) -> Details:
    kind = str(e.get("event"))
    msg = e.get("msg") or {}
    tags = msg.get("tags") or []
    bounce = {"hard_bounce": "hard", "soft_bounce": "soft"}.get(kind)
    return Details(
        provider_event=kind,
        key=(e.get("_id"), kind, e.get("ts"), e.get("url")),
        email_id=c.first_text(e.get("_id"), msg.get("_id")),
        email_subject=c.first_text(msg.get("subject")),
        campaign_name=c.first_text(*(meta.get(k) for k in c.CAMPAIGN_KEYS), *(tags[:1] if tags else [])),
        bounce_type=bounce,
        ip=c.first_text(e.get("ip")),
        extra={"tags": tags or None},
    )


def _postmark(e: Mapping[str, Any], meta: Mapping[str, Any]) -> Details:
    record = str(e.get("RecordType"))
    kind = record if record not in ("Bounce", "SpamComplaint") else f"{record}:{e.get('Type')}"
    bounce = None
    if record == "Bounce":
        bounce = "soft" if e.get("Type") in ("SoftBounce", "Transient", "DnsError") else "hard"
    when = e.get("DeliveredAt") or e.get("BouncedAt") or e.get("ReceivedAt") or e.get("ChangedAt")
    key = (record, e.get("ID")) if e.get("ID") else (record, e.get("MessageID"), e.get("Recipient"), when,
                                                      e.get("OriginalLink"))  # fmt: skip
    return Details(
        provider_event=kind,
        key=key,
        email_id=c.first_text(e.get("MessageID")),
        email_subject=c.first_text(e.get("Subject")),
        campaign_name=c.first_text(*(meta.get(k) for k in c.CAMPAIGN_KEYS), e.get("Tag")),
        bounce_type=bounce,
        extra={"tag": c.first_text(e.get("Tag")), "message_stream": c.first_text(e.get("MessageStream"))},
    )


DETAILS: dict[str, Callable[[Mapping[str, Any], Mapping[str, Any]], Details]] = {
    "mailjet": _mailjet, "sendgrid": _sendgrid, "mailgun": _mailgun, "mandrill": _mandrill, "postmark": _postmark,
}  # fmt: skip


def messages_from_anymail(*, provider: str, events: Iterable[Any]) -> list[dict[str, Any]]:
    """One Segment track per anymail tracking event. Raises `PayloadError` for an event
    that is not an object (anymail hands such values through as `esp_event`)."""
    details_of = DETAILS[provider]
    messages = []
    for event in events:
        if str(getattr(event, "event_type", "")) == "inbound":
            raise c.PayloadError(f"{provider} inbound (received) mail is not an email interaction: send it to your "
                                 "inbound hook, which records replies (README, Replies).")  # fmt: skip
        raw = event.esp_event
        if not isinstance(raw, dict):
            raise c.PayloadError(f"A {provider} event must be a JSON object.")
        meta = event.metadata if isinstance(event.metadata, dict) else {}
        d = details_of(raw, meta)
        name = d.event or _BY_ANYMAIL_TYPE.get(str(event.event_type), c.UNKNOWN)
        properties: dict[str, Any] = {
            "email_id": d.email_id or c.first_text(event.message_id),
            "email_subject": d.email_subject,
            "campaign_id": d.campaign_id,
            "campaign_name": d.campaign_name,
            "list_id": d.list_id,
            "metadata": dict(meta) or None,
            **{k: v for k, v in (d.extra or {}).items() if v is not None},
        }
        if name == c.CLICKED:
            properties["link_url"] = event.click_url
        if name in (c.BOUNCED, c.DROPPED, c.BLOCKED, c.DEFERRED):
            properties["bounce_type"] = d.bounce_type
            properties["reason"] = c.first_text(event.mta_response, event.description, event.reject_reason)
        if name == c.OPENED:
            properties["machine_open"] = d.machine if d.machine is not None else c.machine_user_agent(event.user_agent)
        elif name == c.CLICKED:
            properties["bot_click"] = d.machine if d.machine is not None else c.machine_user_agent(event.user_agent)
        messages.append(
            c.email_message(
                message_id=c.stable_message_id(provider, *d.key),
                event=name,
                email=event.recipient,
                user_id=c.passthrough_user_id(meta),
                timestamp=event.timestamp,
                provider=provider,
                provider_event=d.provider_event,
                properties=properties,
                raw=_without_signature(raw),
                ip=d.ip,
                user_agent=event.user_agent,
            )
        )
    return messages


def _without_signature(raw: dict[str, Any]) -> dict[str, Any]:
    """Mailgun's body carries its signature block: credentials-like, not worth keeping."""
    if "signature" in raw and "event-data" in raw:
        return raw["event-data"] if isinstance(raw["event-data"], dict) else {}
    return raw
