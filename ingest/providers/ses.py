"""Amazon SES notifications through SNS. Pure: the SNS envelope's signature check (given
the signing certificate's PEM; fetching it is the caller's), and SES events to Segment
messages.

SNS signs a canonical string of the envelope's fields (docs.aws.amazon.com/sns/latest/dg/
sns-verify-signature-of-message.html): for a Notification `Message, MessageId, Subject (if
any), Timestamp, TopicArn, Type`; for a (Un)SubscriptionConfirmation `Message, MessageId,
SubscribeURL, Timestamp, Token, TopicArn, Type`, each as `name\\nvalue\\n`. Signature
version 1 is RSA with SHA1, version 2 RSA with SHA256."""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from ingest.providers import common as c

MESSAGE_TYPES = ("Notification", "SubscriptionConfirmation", "UnsubscribeConfirmation")
_NOTIFICATION_FIELDS = ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type")
_CONFIRMATION_FIELDS = ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type")
# Only AWS's own SNS endpoints may serve certificates and subscription links.
_SNS_HOST = re.compile(r"^sns\.[a-z0-9-]+\.amazonaws\.com(\.cn)?$")

_EVENTS = {
    "Send": c.SENT, "Delivery": c.DELIVERED, "Open": c.OPENED, "Click": c.CLICKED, "Bounce": c.BOUNCED,
    "Complaint": c.SPAM, "Reject": c.DROPPED, "DeliveryDelay": c.DEFERRED, "Subscription": c.UNSUBSCRIBED,
    "Rendering Failure": c.FAILED,
}  # fmt: skip


def _opted_out(subscription: dict[str, Any]) -> bool:
    """An SES subscription event unsubscribes when the new preferences unsubscribe from all
    topics or opt out of any; otherwise the person opted in."""
    prefs = _obj(subscription.get("newTopicPreferences"))
    if prefs.get("unsubscribeAll") is True:
        return True
    topics = prefs.get("topicSubscriptionStatus")
    return not isinstance(topics, list) or any(
        isinstance(t, dict) and t.get("subscriptionStatus") == "OptOut" for t in topics
    )


def parse_envelope(body: bytes) -> dict[str, Any]:
    try:
        envelope = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise c.PayloadError("The body is not an SNS JSON message.") from None
    if not isinstance(envelope, dict) or envelope.get("Type") not in MESSAGE_TYPES:
        raise c.PayloadError(f"An SNS message's `Type` is one of {', '.join(MESSAGE_TYPES)}.")
    return envelope


def aws_url(url: Any) -> bool:
    """An https URL on an SNS host of AWS (where certificates and SubscribeURLs live)."""
    if not isinstance(url, str):
        return False
    parts = urlsplit(url)
    return parts.scheme == "https" and bool(_SNS_HOST.match(parts.hostname or ""))


def canonical_string(envelope: Mapping[str, Any]) -> bytes:
    fields = _NOTIFICATION_FIELDS if envelope.get("Type") == "Notification" else _CONFIRMATION_FIELDS
    out = []
    for name in fields:
        value = envelope.get(name)
        if value is None:
            if name == "Subject":
                continue
            raise c.PayloadError(f"The SNS message has no `{name}`.")
        out.append(f"{name}\n{value}\n")
    return "".join(out).encode()


def signature_valid(envelope: Mapping[str, Any], certificate_pem: bytes) -> bool:
    """Whether the envelope's `Signature` verifies with the certificate's key."""
    from cryptography import x509
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding, rsa

    version = str(envelope.get("SignatureVersion"))
    algorithm: hashes.HashAlgorithm = hashes.SHA1() if version == "1" else hashes.SHA256()
    if version not in ("1", "2"):
        return False
    try:
        signature = base64.b64decode(str(envelope.get("Signature") or ""), validate=True)
        key = x509.load_pem_x509_certificate(certificate_pem).public_key()
        if not isinstance(key, rsa.RSAPublicKey):
            return False
        key.verify(signature, canonical_string(envelope), padding.PKCS1v15(), algorithm)
    except (binascii.Error, ValueError, InvalidSignature, c.PayloadError):
        return False
    return True


def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def messages_from_ses(envelope: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The messages of a (verified) SNS Notification holding an SES event: one per
    recipient the event concerns. SNS keeps `MessageId` across retries: it is the key."""
    text = envelope.get("Message")
    try:
        event = json.loads(text) if isinstance(text, str) else None
    except ValueError:
        event = None
    if not isinstance(event, dict):
        if text == "Successfully validated SNS topic for Amazon SES event publishing.":
            return []
        raise c.PayloadError("The SNS `Message` is not an SES event (a JSON object as a string).")
    kind = event.get("eventType") or event.get("notificationType")
    if not isinstance(kind, str):
        raise c.PayloadError("The SES event has no `eventType` or `notificationType`.")
    mail = _obj(event.get("mail"))
    detail_key = {"Rendering Failure": "failure", "DeliveryDelay": "deliveryDelay"}.get(kind, kind.lower())
    detail = _obj(event.get(detail_key))
    recipients = _recipients(kind, detail, mail)
    headers = _obj(mail.get("commonHeaders"))
    tags = _obj(mail.get("tags"))
    metadata = {k: v[0] if isinstance(v, list) and len(v) == 1 else v for k, v in tags.items()}
    name = _EVENTS.get(kind, c.UNKNOWN)
    if kind == "Subscription" and not _opted_out(detail):
        name = c.SUBSCRIBED
    properties: dict[str, Any] = {
        "email_id": c.first_text(mail.get("messageId")),
        "email_subject": c.first_text(headers.get("subject")),
        "campaign_name": c.first_text(*(metadata.get(k) for k in c.CAMPAIGN_KEYS)),
        "metadata": metadata or None,
    }
    if name == c.BOUNCED:
        bounce_type = detail.get("bounceType")
        properties["bounce_type"] = "hard" if bounce_type == "Permanent" else "soft"
        properties["reason"] = c.first_text(detail.get("bounceSubType"))
    user_agent = c.first_text(detail.get("userAgent"))
    if name == c.CLICKED:
        properties["link_url"] = c.first_text(detail.get("link"))
        properties["bot_click"] = c.machine_user_agent(user_agent)
    if name == c.OPENED:
        properties["machine_open"] = c.machine_user_agent(user_agent)
    at = _parse_time(detail.get("timestamp")) or _parse_time(envelope.get("Timestamp"))
    return [
        c.email_message(
            message_id=c.stable_message_id("ses", envelope.get("MessageId"), email.lower()),
            event=name,
            email=email,
            user_id=c.passthrough_user_id(metadata),
            timestamp=at,
            provider="ses",
            provider_event=kind,
            properties=properties,
            raw=event,
            ip=c.first_text(detail.get("ipAddress")),
            user_agent=user_agent,
        )
        for email in recipients
    ]


def _obj(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _recipients(kind: str, detail: Mapping[str, Any], mail: Mapping[str, Any]) -> list[str]:
    listed: Any = None
    if kind == "Bounce":
        listed = [r.get("emailAddress") for r in detail.get("bouncedRecipients") or [] if isinstance(r, dict)]
    elif kind == "Complaint":
        listed = [r.get("emailAddress") for r in detail.get("complainedRecipients") or [] if isinstance(r, dict)]
    elif kind in ("Delivery", "DeliveryDelay"):
        listed = detail.get("recipients") or [
            r.get("emailAddress") for r in detail.get("delayedRecipients") or [] if isinstance(r, dict)
        ]
    if not isinstance(listed, list) or not listed:
        listed = mail.get("destination")
    if not isinstance(listed, list):  # a string would be read letter by letter
        listed = []
    recipients = [r for r in dict.fromkeys(r for r in listed if isinstance(r, str)) if "@" in r]
    if not recipients:
        raise c.PayloadError(f"The SES {kind} event names no recipient address (mail.destination).")
    return recipients
