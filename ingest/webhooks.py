"""Email providers' webhooks: authenticate each request as its provider does, parse it into
Segment messages (`ingest/providers/`, pure), and store them through `messages_ingest`,
the one store path (deduplicated on `(source, messageId)`, pipeline enqueued after commit).

django-anymail verifies and parses Mailjet, SendGrid, Mailgun, Mandrill and Postmark: its
webhook view classes are instantiated per request with this source's secrets as keyword
arguments (anymail reads a keyword before its settings), and only their `run_validators`
and `parse_events` are used. Mailchimp audience webhooks, Braze Currents and SES through
SNS (anymail verifies no SNS signature and needs boto3) have parsers of their own.

A request that fails authentication is answered 401 or 403 and stores nothing; a body that
cannot be read is answered 400. Both are kept in the ingest debugger.
"""

from __future__ import annotations

import hashlib
import threading
import time
import urllib.request
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import orjson
from anymail.exceptions import AnymailError, AnymailNotSupportedWarning, AnymailWebhookValidationFailure
from anymail.webhooks.mailgun import MailgunTrackingWebhookView
from anymail.webhooks.mailjet import MailjetTrackingWebhookView
from anymail.webhooks.mandrill import MandrillCombinedWebhookView
from anymail.webhooks.postmark import PostmarkTrackingWebhookView
from anymail.webhooks.sendgrid import SendGridTrackingWebhookView
from django.db import IntegrityError, transaction
from django.http import HttpRequest
from django.http.request import RawPostDataException
from django.utils.crypto import constant_time_compare

from ingest.models import Source, WebhookToken
from ingest.providers import braze, mailchimp, ses
from ingest.providers.anymail_events import messages_from_anymail
from ingest.providers.common import PayloadError
from ingest.refusals import refusal_record
from ingest.services import Outcome, messages_ingest

PROVIDERS = tuple(k for k in Source.Kind.values if k not in (Source.Kind.HTTP, Source.Kind.SQL))
BASIC_AUTH_USER = "cdp"
_BASIC_AUTH = ("mailjet", "postmark")
_ANYMAIL_VIEWS: dict[str, type[Any]] = {
    "mailjet": MailjetTrackingWebhookView, "postmark": PostmarkTrackingWebhookView,
    "mailgun": MailgunTrackingWebhookView, "sendgrid": SendGridTrackingWebhookView,
    "mandrill": MandrillCombinedWebhookView,
}  # fmt: skip
# How old (or early) a signed timestamp may be. Mailgun signs only timestamp + token, not the
# body, and SendGrid's signature is good for ever: past this, a signature is a replay. Each
# provider signs each delivery attempt afresh, so its retries pass.
REPLAY_WINDOW_SECONDS = 10 * 60
# Errors anymail's parsers raise on a body that is not the provider's shape.
_PARSE_ERRORS = (ValueError, KeyError, TypeError, AttributeError, IndexError, OverflowError, AnymailError)


@dataclass(slots=True)
class WebhookOutcome:
    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)


class _Refused(Exception):
    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers or {}


# --- URLs ------------------------------------------------------------------------------------


def webhook_path(source: Source) -> str:
    return f"/v1/webhooks/{source.kind}/{source.pk}"


def webhook_url(source: Source, *, base_url: str) -> str:
    """The URL to paste into the provider, with this source's secret where the provider
    authenticates by the URL (Basic auth for Mailjet and Postmark, `?secret=` for
    Mailchimp). `source.webhook_url`, when set, is the URL as registered (e.g. behind a
    proxy) and is the base; the secret is still added to it where the provider needs it."""
    if source.webhook_url:
        scheme, netloc, path, query, _ = urlsplit(source.webhook_url)
    else:
        scheme, netloc, base_path, _, _ = urlsplit(base_url.rstrip("/"))
        path, query = base_path + webhook_path(source), ""
    if source.kind in _BASIC_AUTH and "@" not in netloc:
        netloc = f"{BASIC_AUTH_USER}:{source.webhook_secret}@{netloc}"
    elif source.kind == Source.Kind.MAILCHIMP and "secret=" not in query:
        query = "&".join(part for part in (query, f"secret={source.webhook_secret}") if part)
    return urlunsplit((scheme, netloc, path, query, ""))


# --- SNS: the certificate fetch and the subscription confirmation (injectable) ---------------


def _urlopen_get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as response:  # https, on an AWS SNS host (checked)
        data: bytes = response.read(1_000_000)
        return data


# Tests replace this with a fake that follows SNS's contract; nothing else calls out.
sns_http_get: Callable[[str], bytes] = _urlopen_get
_CERTS: dict[str, bytes] = {}
_CERTS_LOCK = threading.Lock()


def _sns_certificate(url: str) -> bytes:
    with _CERTS_LOCK:
        cached = _CERTS.get(url)
    if cached is None:
        cached = sns_http_get(url)
        with _CERTS_LOCK:
            if len(_CERTS) > 32:  # AWS rotates a handful; never let it grow
                _CERTS.clear()
            _CERTS[url] = cached
    return cached


# --- The service -------------------------------------------------------------------------------


def webhook_ingest(*, request: HttpRequest, provider: str, source_id: int, received_at: datetime) -> WebhookOutcome:
    """Handle one provider request. Authentication failure: 401/403, nothing stored.
    A body the provider's parser refuses: 400. Otherwise 200, the messages accepted through
    `messages_ingest` (`accepted` counts them; the pipeline drops a redelivered one), any
    refused one in the debugger. A signed timestamp older than the replay window, or a
    Mailgun token used before for another body: 403."""
    endpoint = f"webhooks/{provider}"[:40]
    client = request.META.get("REMOTE_ADDR")
    source = Source.objects.filter(pk=source_id, kind=provider, enabled=True).first() if provider in PROVIDERS else None
    if source is None:
        message = "There is no enabled source of that kind at this URL."
        refusal_record(source=None, endpoint=endpoint, received_at=received_at, code="unknown_source",
                       reason=message, payload=_payload(request), client=client)  # fmt: skip
        return WebhookOutcome(404, {"code": "unknown_source", "message": message})
    try:
        if request.method in ("GET", "HEAD"):
            return _probe(request, source)
        items, note, token = _authenticated_messages(request, source)
        if note:
            refusal_record(source=source, endpoint=endpoint, received_at=received_at, code="not_stored",
                           reason=note, payload=_payload(request), client=client)  # fmt: skip
        with transaction.atomic():  # the token is used only if what it signed is stored
            if token is not None and not _token_use(source, *token, received_at=received_at):
                return WebhookOutcome(200, {"success": True, "accepted": 0})  # the same delivery, retried
            if not items:
                return WebhookOutcome(200, {"success": True, "accepted": 0})
            outcome: Outcome = messages_ingest(
                items=items, write_key=source.write_key, endpoint=endpoint, received_at=received_at,
                email_identifies=True, client=client,
            )  # fmt: skip
    except _Refused as refused:
        refusal_record(source=source, endpoint=endpoint, received_at=received_at, code=refused.code,
                       reason=refused.message, payload=_payload(request), client=client)  # fmt: skip
        return WebhookOutcome(refused.status, {"code": refused.code, "message": refused.message}, refused.headers)
    return WebhookOutcome(outcome.status, {**outcome.body, "accepted": outcome.accepted})


def _token_use(source: Source, token: str, body_sha256: str, *, received_at: datetime) -> bool:
    """Record a Mailgun signature token as used. False when it was used before for this
    very body (Mailgun retrying a delivery: nothing new to store); refused when it was used
    for another body (a captured signature with made-up events)."""
    try:
        with transaction.atomic():
            WebhookToken.objects.create(source=source, token=token, body_sha256=body_sha256, seen_at=received_at)
    except IntegrityError:
        first = WebhookToken.objects.filter(source=source, token=token).values_list("body_sha256", flat=True).first()
        if first == body_sha256:
            return False
        raise _Refused(
            403, "replayed_signature", "This signature token was already used for another request."
        ) from None
    return True


def _check_fresh(timestamp: Any) -> None:
    try:
        signed_at = float(timestamp)
    except (TypeError, ValueError):
        raise _Refused(403, "invalid_signature", "The signed timestamp is not a number.") from None
    age = time.time() - signed_at
    if abs(age) > REPLAY_WINDOW_SECONDS:
        when = f"{int(age // 60)} minutes old" if age > 0 else f"{int(-age // 60)} minutes in the future"
        raise _Refused(403, "stale_signature", f"The signature's timestamp is {when}; at most "
                       f"{REPLAY_WINDOW_SECONDS // 60} minutes are accepted (a replay?).")  # fmt: skip


def _signed_token(request: HttpRequest, kind: str) -> tuple[str, str] | None:
    """After the signature verified: refuse a stale timestamp (Mailgun, SendGrid) and
    return Mailgun's token with the hash of the body it came with."""
    if kind == Source.Kind.SENDGRID:
        _check_fresh(request.headers.get("X-Twilio-Email-Event-Webhook-Timestamp"))
        return None
    if kind != Source.Kind.MAILGUN:
        return None
    if request.content_type == "application/json":
        block = orjson.loads(request.body).get("signature") or {}  # verified by anymail: it parses
        timestamp, token = block.get("timestamp"), block.get("token")
        digest = hashlib.sha256(request.body).hexdigest()
    else:  # the legacy form-encoded webhook
        timestamp, token = request.POST.get("timestamp"), request.POST.get("token")
        digest = hashlib.sha256(orjson.dumps(sorted(request.POST.lists()))).hexdigest()
    _check_fresh(timestamp)
    if not isinstance(token, str) or not token:
        raise _Refused(403, "invalid_signature", "The signature has no token.")
    return token[:200], digest


def _payload(request: HttpRequest) -> Any:
    """What was sent, for the debugger: the raw body, or the parsed form when a multipart
    parse has consumed it (Django then refuses to give the body)."""
    try:
        return request.body
    except RawPostDataException:
        return {k: request.POST.getlist(k) for k in request.POST}


def _probe(request: HttpRequest, source: Source) -> WebhookOutcome:
    """Mailchimp validates a URL with GET (its secret must be right); Mandrill with HEAD."""
    if source.kind == Source.Kind.MAILCHIMP:
        _check_url_secret(request, source)
        return WebhookOutcome(200, {"success": True})
    if request.method == "HEAD" and source.kind == Source.Kind.MANDRILL:
        return WebhookOutcome(200, {"success": True})
    raise _Refused(405, "method_not_allowed", "Use POST.")


def _check_url_secret(request: HttpRequest, source: Source) -> None:
    given = request.GET.get("secret", "")
    if not given:
        raise _Refused(401, "unauthorized", "The webhook URL's `secret` is missing.")
    if not constant_time_compare(given, source.webhook_secret):
        raise _Refused(403, "forbidden", "The webhook URL's `secret` is wrong.")


def _authenticated_messages(
    request: HttpRequest, source: Source
) -> tuple[list[dict[str, Any]], str | None, tuple[str, str] | None]:
    """The request's messages, a note for the debugger if it carried none worth storing, and
    the signature token to record as used (Mailgun)."""
    if request.method != "POST":
        raise _Refused(405, "method_not_allowed", "Use POST.")
    kind = source.kind
    try:
        if kind in _ANYMAIL_VIEWS:
            return _anymail_messages(request, source)
        if kind == Source.Kind.MAILCHIMP:
            _check_url_secret(request, source)
            return (*mailchimp.messages_from_mailchimp({k: request.POST[k] for k in request.POST}), None)
        if kind == Source.Kind.BRAZE:
            _check_bearer(request, source)
            try:
                body = orjson.loads(request.body)
            except orjson.JSONDecodeError:
                raise PayloadError("The body is not valid JSON.") from None
            return braze.messages_from_braze(body), None, None
        if kind == Source.Kind.SES:
            return (*_ses_messages(request, source), None)
    except PayloadError as exc:
        raise _Refused(400, "invalid_payload", exc.message) from None
    raise _Refused(404, "unknown_source", f"No webhook for {kind!r}.")  # pragma: no cover (kinds are closed)


def _anymail_view(source: Source) -> Any:
    """A fresh anymail view configured with this source's secrets (views keep state per
    batch, e.g. Mandrill's inbound or tracking switch, so they are never shared)."""
    kind = source.kind
    kwargs: dict[str, Any] = {"webhook_secret": []}
    if kind in _BASIC_AUTH:
        kwargs["webhook_secret"] = [f"{BASIC_AUTH_USER}:{source.webhook_secret}"]
    else:
        if not source.signing_key.strip():
            raise _Refused(403, "not_configured", f"Set this source's {kind} signing key in the admin first.")
        key = source.signing_key.strip()
        if kind == Source.Kind.MAILGUN:
            kwargs["webhook_signing_key"] = key
        elif kind == Source.Kind.SENDGRID:
            kwargs["tracking_webhook_verification_key"] = key
        else:  # mandrill: the URL exactly as registered
            from django.conf import settings

            kwargs["webhook_key"] = key
            kwargs["webhook_url"] = webhook_url(source, base_url=settings.CDP_PUBLIC_URL)
    try:
        with warnings.catch_warnings():
            # Anymail warns on every SendGrid view it builds that it no longer officially
            # supports SendGrid; its signed-webhook check, which is what we use, is unchanged.
            warnings.simplefilter("ignore", AnymailNotSupportedWarning)
            return _ANYMAIL_VIEWS[kind](**kwargs)
    except (ValueError, TypeError, AnymailError) as exc:  # e.g. a SendGrid key that is not a public key
        raise _Refused(403, "not_configured", f"This source's {kind} signing key is not usable: {exc}") from None


def _anymail_messages(
    request: HttpRequest, source: Source
) -> tuple[list[dict[str, Any]], None, tuple[str, str] | None]:
    view = _anymail_view(source)
    if source.kind in _BASIC_AUTH and not request.META.get("HTTP_AUTHORIZATION"):
        raise _Refused(401, "unauthorized", "Basic auth is missing: paste the URL with its credentials.",
                       {"WWW-Authenticate": 'Basic realm="webhook"'})  # fmt: skip
    try:
        view.run_validators(request)
    except AnymailWebhookValidationFailure as exc:
        if source.kind in _BASIC_AUTH:
            raise _Refused(401, "unauthorized", "Wrong Basic-auth credentials.",
                           {"WWW-Authenticate": 'Basic realm="webhook"'}) from None  # fmt: skip
        raise _Refused(403, "invalid_signature", str(exc)) from None
    except _PARSE_ERRORS as exc:
        raise _Refused(403, "invalid_signature", f"The request cannot be verified: {exc}") from None
    token = _signed_token(request, source.kind)
    _check_event_array(request, source.kind)
    try:
        events = view.parse_events(request)
        if not isinstance(events, list):
            raise PayloadError("The body is not a list of events.")
        return messages_from_anymail(provider=source.kind, events=events), None, token
    except _PARSE_ERRORS as exc:
        raise PayloadError(f"The body is not a {source.kind} webhook: {type(exc).__name__} {exc}") from None


def _check_event_array(request: HttpRequest, kind: str) -> None:
    """SendGrid posts a JSON array, Mandrill a form field holding one: anymail iterates
    whatever it is given, so an object would pass as no events at all (silence)."""
    if kind == Source.Kind.SENDGRID:
        text: Any = request.body
    elif kind == Source.Kind.MANDRILL:
        text = request.POST.get("mandrill_events", "")
    else:
        return
    if text.lstrip()[:1] not in ("[", b"["):
        where = "The body" if kind == Source.Kind.SENDGRID else "The `mandrill_events` field"
        raise PayloadError(f"{where} must be a JSON array of events.")


def _check_bearer(request: HttpRequest, source: Source) -> None:
    scheme, _, token = request.META.get("HTTP_AUTHORIZATION", "").partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise _Refused(401, "unauthorized", "A bearer token is required.", {"WWW-Authenticate": "Bearer"})
    if not constant_time_compare(token.strip(), source.webhook_secret):
        raise _Refused(403, "forbidden", "Wrong bearer token.")


def _ses_messages(request: HttpRequest, source: Source) -> tuple[list[dict[str, Any]], str | None]:
    envelope = ses.parse_envelope(request.body)
    header = request.META.get("HTTP_X_AMZ_SNS_MESSAGE_TYPE")
    if header and header != envelope.get("Type"):
        raise PayloadError("The x-amz-sns-message-type header does not match the body's Type.")
    topic = source.signing_key.strip()
    if not topic:
        # SNS signs every topic's messages, anyone's: the signature alone would let any AWS
        # account subscribe this URL and post made-up events. The source names its topic.
        raise _Refused(403, "not_configured", "Set this source's SNS topic ARN (signing key) to accept its topic.")
    cert_url = envelope.get("SigningCertURL") or envelope.get("SigningCertUrl")
    if not ses.aws_url(cert_url):
        raise _Refused(403, "invalid_signature", "The SNS signing certificate is not on an AWS SNS host.")
    try:
        certificate = _sns_certificate(str(cert_url))
    except OSError as exc:
        raise _Refused(503, "certificate_unavailable", f"The SNS certificate could not be fetched: {exc}") from None
    if not ses.signature_valid(envelope, certificate):
        raise _Refused(403, "invalid_signature", "The SNS signature does not verify.")
    if envelope.get("TopicArn") != topic:
        raise _Refused(403, "forbidden", "This source accepts another SNS topic.")
    if envelope["Type"] == "SubscriptionConfirmation":
        subscribe = envelope.get("SubscribeURL")
        if not ses.aws_url(subscribe):
            raise _Refused(403, "forbidden", "The SubscribeURL is not on an AWS SNS host.")
        try:
            sns_http_get(str(subscribe))
        except OSError as exc:
            raise _Refused(503, "confirmation_failed", f"Confirming the subscription failed: {exc}") from None
        return [], f"Confirmed the SNS subscription to {envelope.get('TopicArn')}."
    if envelope["Type"] == "UnsubscribeConfirmation":
        return [], f"SNS unsubscribed this URL from {envelope.get('TopicArn')}."
    return ses.messages_from_ses(envelope), None
