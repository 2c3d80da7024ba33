"""Email providers' webhooks, from the providers' sample payloads: what each event becomes,
authentication accepted and refused (nothing stored), idempotent redelivery, bad bodies."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

import orjson
import pytest

from ingest import webhooks
from ingest.models import IngestCounter, RejectedMessage
from ingest.webhooks import webhook_url
from profiles.models import Event
from tests.ingest.esp import (
    BASE_URL,
    CERT_URL,
    MAILGUN_KEY,
    SendGridSigner,
    SnsSigner,
    basic,
    mailgun_signed,
    mandrill_signature,
    path_of,
    provider_source,
    raw_sample,
    sample,
)

pytestmark = pytest.mark.django_db

MAILJET_FILES = {
    "mailjet-sent.json": ("Email Delivered", "alice.martin@example.com"),
    "mailjet-open.json": ("Email Opened", "alice.martin@example.com"),
    "mailjet-click.json": ("Email Link Clicked", "alice.martin@example.com"),
    "mailjet-bounce.json": ("Email Bounced", "no.such.user@example.net"),
    "mailjet-blocked.json": ("Email Blocked", "old.bouncer@example.org"),
    "mailjet-spam.json": ("Email Marked as Spam", "alice.martin@example.com"),
    "mailjet-unsub.json": ("Unsubscribed", "alice.martin@example.com"),
}


def events() -> list[Event]:
    return list(Event.objects.order_by("id"))


def adds_nothing(send: Callable[[], Any]) -> bool:
    """A redelivery is answered 200 and adds nothing to the log: the pipeline drops what the
    log already holds (and counts it as a duplicate)."""
    before = Event.objects.count()
    response = send()
    return response.status_code == 200 and Event.objects.count() == before


def post_json(client: Any, url: str, body: Any, headers: dict[str, str] | None = None) -> Any:
    data = body if isinstance(body, bytes) else orjson.dumps(body)
    return client.post(path_of(url), data=data, content_type="application/json", headers=headers or {})


# --- Mailjet ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(MAILJET_FILES))
def test_mailjet_single_events_map_to_segment_email_events(client, name):
    source = provider_source("mailjet")
    url = webhook_url(source, base_url=BASE_URL)
    response = post_json(client, url, raw_sample(name), {"Authorization": basic(url)})
    assert response.status_code == 200, response.content
    (event,) = events()
    expected, email = MAILJET_FILES[name]
    raw = sample(name)
    assert (event.type, event.event, event.user_id) == ("track", expected, "u_48213")
    assert event.context["traits"] == {"email": email}
    p = event.properties
    assert (p["provider"], p["provider_event"], p["raw"]) == ("mailjet", raw["event"], raw)
    assert p["email_id"] == str(raw["MessageID"])  # a bigint above 2**53, kept exactly
    assert (p["campaign_id"], p["campaign_name"], p["custom_id"]) == ("7812345", "spring_sale_2025", "order-58213")
    assert p["metadata"] == {"cdp_user_id": "u_48213"}
    assert event.timestamp.timestamp() == raw["time"]
    if name == "mailjet-click.json":
        assert p["link_url"] == raw["url"] and p["bot_click"] is False
        assert event.context["ip"] == "203.0.113.24" and event.context["userAgent"] == raw["agent"]
    if name == "mailjet-open.json":
        assert p["machine_open"] is False
    if name == "mailjet-bounce.json":
        assert p["bounce_type"] == "hard"
    if name == "mailjet-unsub.json":
        assert p["list_id"] == "10234"


def test_mailjet_grouped_array_is_stored_once_however_often_it_is_redelivered(client):
    source = provider_source("mailjet")
    url = webhook_url(source, base_url=BASE_URL)
    batch = [sample(n) for n in sorted(MAILJET_FILES)]
    first = post_json(client, url, batch, {"Authorization": basic(url)})
    assert first.status_code == 200 and first.json()["accepted"] == 7
    assert adds_nothing(lambda: post_json(client, url, batch, {"Authorization": basic(url)}))
    assert Event.objects.count() == 7
    assert IngestCounter.objects.get(source=source).duplicates == 7
    assert sorted(e.event for e in events()) == sorted(v[0] for v in MAILJET_FILES.values())


def test_mailjet_refuses_missing_or_wrong_basic_auth_and_stores_nothing(client):
    source = provider_source("mailjet")
    url = webhook_url(source, base_url=BASE_URL)
    missing = post_json(client, url, raw_sample("mailjet-open.json"))
    assert missing.status_code == 401 and missing["WWW-Authenticate"].startswith("Basic")
    wrong = post_json(client, url, raw_sample("mailjet-open.json"), {"Authorization": basic(url.replace("cdp:", "x:"))})
    assert wrong.status_code == 401
    assert Event.objects.count() == 0
    assert RejectedMessage.objects.filter(source=source, code="unauthorized").count() == 2


def test_mailjet_machine_open_from_the_user_agent(client):
    source = provider_source("mailjet")
    url = webhook_url(source, base_url=BASE_URL)
    proxy = {**sample("mailjet-open.json"), "agent": "Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 "
             "(via ggpht.com GoogleImageProxy)"}  # fmt: skip
    scanner = {**sample("mailjet-click.json"), "agent": "Barracuda Sentinel (EE)"}
    assert post_json(client, url, [proxy, scanner], {"Authorization": basic(url)}).status_code == 200
    opened, clicked = (Event.objects.get(event=n) for n in ("Email Opened", "Email Link Clicked"))
    assert opened.properties["machine_open"] is True and clicked.properties["bot_click"] is True


def test_a_body_that_is_not_the_providers_gets_400_and_is_kept(client):
    source = provider_source("mailjet")
    url = webhook_url(source, base_url=BASE_URL)
    response = post_json(client, url, b"[1, 2", {"Authorization": basic(url)})
    assert response.status_code == 400 and response.json()["code"] == "invalid_payload"
    not_objects = post_json(client, url, [1, 2], {"Authorization": basic(url)})
    assert not_objects.status_code == 400
    assert RejectedMessage.objects.filter(source=source, code="invalid_payload").count() == 2
    assert Event.objects.count() == 0


def test_an_event_without_recipient_or_user_is_refused_by_index_and_the_rest_stored(client):
    source = provider_source("mailjet")
    url = webhook_url(source, base_url=BASE_URL)
    nobody = {k: v for k, v in sample("mailjet-open.json").items() if k not in ("email", "Payload")}
    response = post_json(client, url, [sample("mailjet-sent.json"), nobody], {"Authorization": basic(url)})
    assert response.status_code == 200
    assert response.json()["rejected"][0]["index"] == 1
    assert Event.objects.count() == 1
    assert RejectedMessage.objects.get(source=source).code == "missing_identity"


def test_unknown_source_or_kind_is_404(client):
    source = provider_source("mailjet")
    url = webhook_url(source, base_url=BASE_URL)
    assert client.post(path_of(url).replace("/mailjet/", "/sendgrid/"), data=b"[]",
                       content_type="application/json").status_code == 404  # fmt: skip
    assert client.post("/v1/webhooks/mailjet/99999", data=b"[]", content_type="application/json").status_code == 404


# --- SendGrid --------------------------------------------------------------------------------

SENDGRID_NAMES = {
    "processed": "Email Sent", "deferred": "Email Deferred", "delivered": "Email Delivered", "open": "Email Opened",
    "click": "Email Link Clicked", "bounce": "Email Bounced", "blocked": "Email Blocked", "dropped": "Email Dropped",
    "spamreport": "Email Marked as Spam", "unsubscribe": "Unsubscribed", "group_unsubscribe": "Unsubscribed",
    "group_resubscribe": "Email Subscribed",
}  # fmt: skip


def test_sendgrid_signed_batch_maps_every_event_type(client):
    signer = SendGridSigner()
    source = provider_source("sendgrid", signing_key=signer.public_key)
    url = webhook_url(source, base_url=BASE_URL)
    body = raw_sample("sendgrid-batch.json") + b"\r\n"  # the real body's trailing CRLF is signed too
    response = post_json(client, url, body, signer.headers(body))
    assert response.status_code == 200, response.content
    stored = {(e.properties["provider_event"], e.properties.get("bounce_type")): e for e in events()}
    assert len(stored) == 12
    for (kind, bounce), event in stored.items():
        key = "blocked" if kind == "bounce" and bounce is None else kind
        assert event.event == SENDGRID_NAMES[key], kind
        assert event.user_id == "u_48213" and event.properties["metadata"] == {"cdp_user_id": "u_48213"}
        assert kind.startswith("group_") or event.properties["categories"] == ["newsletter", "spring_sale"]
    click = Event.objects.get(event="Email Link Clicked")
    assert click.properties["link_url"] == "https://shop.example.com/spring-sale"
    assert Event.objects.get(event="Email Bounced").properties["bounce_type"] == "hard"
    assert adds_nothing(lambda: post_json(client, url, body, signer.headers(body)))
    assert Event.objects.count() == 12


def test_sendgrid_refuses_an_old_signed_timestamp(client):
    signer = SendGridSigner()
    source = provider_source("sendgrid", signing_key=signer.public_key)
    url = webhook_url(source, base_url=BASE_URL)
    body = raw_sample("sendgrid-batch.json")
    old = signer.headers(body, timestamp=str(int(time.time()) - 11 * 60))
    response = post_json(client, url, body, old)
    assert response.status_code == 403 and response.json()["code"] == "stale_signature"
    assert Event.objects.count() == 0
    assert post_json(client, url, body, signer.headers(body)).status_code == 200


def test_sendgrid_refuses_a_bad_or_missing_signature(client):
    signer = SendGridSigner()
    source = provider_source("sendgrid", signing_key=signer.public_key)
    url = webhook_url(source, base_url=BASE_URL)
    body = raw_sample("sendgrid-batch.json")
    tampered = body.replace(b"alice.martin", b"mallory.evil")
    assert post_json(client, url, tampered, signer.headers(body)).status_code == 403
    assert post_json(client, url, body).status_code == 403
    other = SendGridSigner()
    assert post_json(client, url, body, other.headers(body)).status_code == 403
    unconfigured = provider_source("sendgrid", name="no key")
    assert (
        post_json(client, webhook_url(unconfigured, base_url=BASE_URL), body, signer.headers(body)).status_code == 403
    )
    assert Event.objects.count() == 0


# --- Mailgun ---------------------------------------------------------------------------------

MAILGUN_FILES = {
    "mailgun-accepted.json": "Email Sent", "mailgun-delivered.json": "Email Delivered",
    "mailgun-opened.json": "Email Opened", "mailgun-clicked.json": "Email Link Clicked",
    "mailgun-failed-permanent.json": "Email Bounced", "mailgun-complained.json": "Email Marked as Spam",
    "mailgun-unsubscribed.json": "Unsubscribed",
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(MAILGUN_FILES))
def test_mailgun_signed_events(client, name):
    source = provider_source("mailgun", signing_key=MAILGUN_KEY)
    url = webhook_url(source, base_url=BASE_URL)
    body = mailgun_signed(raw_sample(name))
    response = post_json(client, url, body)
    assert response.status_code == 200, response.content
    (event,) = events()
    data = sample(name)["event-data"]
    assert event.event == MAILGUN_FILES[name] and event.user_id == "u_48213"
    assert event.context["traits"]["email"] == data["recipient"]
    assert event.properties["campaign_name"] == "spring_sale_2025"  # from user-variables
    assert event.properties["raw"] == data  # the signature block is not kept
    if name == "mailgun-failed-permanent.json":
        assert event.properties["bounce_type"] == "hard"
    if name == "mailgun-opened.json":
        assert event.properties["machine_open"] is False  # Mailgun's client-info.bot is empty
    assert adds_nothing(lambda: post_json(client, url, body))  # Mailgun's retry of the same delivery


def test_mailgun_bot_flag_marks_a_machine_open(client):
    source = provider_source("mailgun", signing_key=MAILGUN_KEY)
    body = sample("mailgun-opened.json")
    body["event-data"]["client-info"]["bot"] = "apple"
    assert post_json(client, webhook_url(source, base_url=BASE_URL), mailgun_signed(body)).status_code == 200
    assert Event.objects.get().properties["machine_open"] is True


def test_mailgun_refuses_a_wrong_signature(client):
    source = provider_source("mailgun", signing_key="another-key")
    response = post_json(client, webhook_url(source, base_url=BASE_URL), mailgun_signed(sample("mailgun-opened.json")))
    assert response.status_code == 403 and Event.objects.count() == 0
    assert RejectedMessage.objects.get(source=source).code == "invalid_signature"


def test_mailgun_refuses_an_old_signature(client):
    """Mailgun signs only timestamp + token, so a captured signature must not stay good."""
    source = provider_source("mailgun", signing_key=MAILGUN_KEY)
    url = webhook_url(source, base_url=BASE_URL)
    stale = mailgun_signed(sample("mailgun-opened.json"), at=time.time() - 11 * 60)
    response = post_json(client, url, stale)
    assert response.status_code == 403 and response.json()["code"] == "stale_signature"
    early = mailgun_signed(sample("mailgun-opened.json"), at=time.time() + 11 * 60)
    assert post_json(client, url, early).status_code == 403
    fine = mailgun_signed(sample("mailgun-opened.json"), at=time.time() - 9 * 60)
    assert post_json(client, url, fine).status_code == 200
    assert Event.objects.count() == 1


def test_mailgun_refuses_a_used_token_with_made_up_events(client):
    source = provider_source("mailgun", signing_key=MAILGUN_KEY)
    url = webhook_url(source, base_url=BASE_URL)
    captured = orjson.loads(mailgun_signed(sample("mailgun-opened.json")))
    assert post_json(client, url, captured).status_code == 200
    forged = {**captured, "event-data": {**captured["event-data"], "id": "made-up", "recipient": "eve@example.com"}}
    response = post_json(client, url, forged)
    assert response.status_code == 403 and response.json()["code"] == "replayed_signature"
    assert Event.objects.count() == 1 and not Event.objects.filter(context__traits__email="eve@example.com").exists()
    assert RejectedMessage.objects.get(source=source).code == "replayed_signature"


# --- Mandrill --------------------------------------------------------------------------------


def test_mandrill_form_batch_signed_over_the_registered_url(client):
    source = provider_source("mandrill", signing_key="mandrill-webhook-key")
    source.webhook_url = f"{BASE_URL}/v1/webhooks/mandrill/{source.pk}"
    source.save()
    form = {"mandrill_events": json.dumps(sample("mandrill-events.json"))}
    signature = mandrill_signature("mandrill-webhook-key", source.webhook_url, form)
    path = path_of(source.webhook_url)
    assert client.head(path).status_code == 200  # Mandrill's URL check
    response = client.post(path, data=urlencode(form), content_type="application/x-www-form-urlencoded",
                           headers={"X-Mandrill-Signature": signature})  # fmt: skip
    assert response.status_code == 200, response.content
    sent, opened, bounced = events()
    assert (sent.event, opened.event, bounced.event) == ("Email Sent", "Email Opened", "Email Bounced")
    assert sent.user_id == "u_48213" and bounced.user_id == "u_99001"
    assert sent.properties["email_subject"] == "Your order #58213 has shipped"
    assert sent.properties["campaign_name"] == "order-shipped"  # the first tag
    assert bounced.properties["bounce_type"] == "hard"
    assert opened.context["ip"] == "203.0.113.24"
    form_type = "application/x-www-form-urlencoded"
    assert adds_nothing(
        lambda: client.post(
            path, data=urlencode(form), content_type=form_type, headers={"X-Mandrill-Signature": signature}
        )
    )
    forged = {"X-Mandrill-Signature": mandrill_signature("other", source.webhook_url, form)}
    wrong = client.post(path, data=urlencode(form), content_type="application/x-www-form-urlencoded", headers=forged)
    assert wrong.status_code == 403 and Event.objects.count() == 3


# --- Postmark --------------------------------------------------------------------------------


def test_postmark_bounce_with_basic_auth(client):
    source = provider_source("postmark")
    url = webhook_url(source, base_url=BASE_URL)
    assert post_json(client, url, raw_sample("postmark-bounce.json")).status_code == 401
    response = post_json(client, url, raw_sample("postmark-bounce.json"), {"Authorization": basic(url)})
    assert response.status_code == 200
    (event,) = events()
    assert (event.event, event.user_id, event.properties["bounce_type"]) == ("Email Bounced", "u_99001", "hard")
    assert event.context["traits"]["email"] == "no.such.user@example.net"
    assert event.properties["email_subject"] == "Your order #58214 has shipped"
    assert adds_nothing(
        lambda: post_json(client, url, raw_sample("postmark-bounce.json"), {"Authorization": basic(url)})
    )


# --- Amazon SES through SNS ------------------------------------------------------------------


@pytest.fixture
def sns(monkeypatch: pytest.MonkeyPatch) -> SnsSigner:
    signer = SnsSigner()
    monkeypatch.setattr(webhooks, "sns_http_get", signer.fetch)
    monkeypatch.setattr(webhooks, "_CERTS", {})
    return signer


def post_sns(client: Any, url: str, envelope: dict[str, Any]) -> Any:
    return client.post(path_of(url), data=json.dumps(envelope), content_type="text/plain",
                       headers={"x-amz-sns-message-type": envelope["Type"]})  # fmt: skip


def test_ses_bounce_notification_verified_by_its_sns_signature(client, sns):
    source = provider_source("ses", signing_key="arn:aws:sns:eu-west-1:123456789012:ses-feedback")
    url = webhook_url(source, base_url=BASE_URL)
    envelope = sns.sign(sample("ses-sns-bounce-notification.json"))
    response = post_sns(client, url, envelope)
    assert response.status_code == 200, response.content
    (event,) = events()
    assert (event.event, event.properties["bounce_type"]) == ("Email Bounced", "hard")
    assert event.context["traits"]["email"] == "no.such.user@example.net"
    assert event.properties["email_subject"] == "Your order #58214 has shipped"
    assert sns.fetched == [CERT_URL]
    assert adds_nothing(lambda: post_sns(client, url, envelope))  # SNS retries keep MessageId
    assert adds_nothing(
        lambda: post_sns(client, url, sns.sign(sample("ses-sns-bounce-notification.json"), version="1"))
    )


def test_ses_refuses_bad_signatures_foreign_certificates_and_other_topics(client, sns):
    source = provider_source("ses", signing_key="arn:aws:sns:eu-west-1:123456789012:ses-feedback")
    url = webhook_url(source, base_url=BASE_URL)
    placeholder = sample("ses-sns-bounce-notification.json")  # its Signature is a placeholder
    placeholder["SigningCertURL"] = CERT_URL
    assert post_sns(client, url, placeholder).status_code == 403
    tampered = sns.sign(sample("ses-sns-bounce-notification.json"))
    tampered["Message"] = tampered["Message"].replace("no.such.user", "someone.else")
    assert post_sns(client, url, tampered).status_code == 403
    foreign = {**sns.sign(sample("ses-sns-bounce-notification.json")), "SigningCertURL": "https://evil.example/c.pem"}
    assert post_sns(client, url, foreign).status_code == 403
    other_topic = sns.sign({**sample("ses-sns-bounce-notification.json"), "TopicArn": "arn:aws:sns:eu-west-1:1:x"})
    assert post_sns(client, url, other_topic).status_code == 403
    assert Event.objects.count() == 0 and CERT_URL in sns.fetched


def test_ses_subscription_is_confirmed_by_getting_the_subscribe_url(client, sns):
    source = provider_source("ses", signing_key="arn:aws:sns:eu-west-1:123456789012:ses-feedback")
    url = webhook_url(source, base_url=BASE_URL)
    subscribe = ("https://sns.eu-west-1.amazonaws.com/?Action=ConfirmSubscription&TopicArn="
                 "arn:aws:sns:eu-west-1:123456789012:ses-feedback&Token=2336412f37")  # fmt: skip
    envelope = sns.sign({
        "Type": "SubscriptionConfirmation", "MessageId": "165545c9-2a5c-472c-8df2-7ff2be2b3b1b",
        "Token": "2336412f37", "TopicArn": "arn:aws:sns:eu-west-1:123456789012:ses-feedback",
        "Message": "You have chosen to subscribe to the topic arn:aws:sns:eu-west-1:123456789012:ses-feedback.",
        "SubscribeURL": subscribe, "Timestamp": "2025-03-14T13:59:00.000Z",
    })  # fmt: skip
    response = post_sns(client, url, envelope)
    assert response.status_code == 200
    assert sns.fetched == [CERT_URL, subscribe]
    assert Event.objects.count() == 0
    assert "Confirmed" in RejectedMessage.objects.get(source=source).reason  # visible in the debugger


def test_ses_without_a_topic_arn_accepts_no_topic(client, sns):
    """Anyone's SNS topic is signed by SNS: an attacker's topic could subscribe this URL and
    post made-up bounces. Until the source names its topic, nothing is confirmed or stored."""
    source = provider_source("ses")
    url = webhook_url(source, base_url=BASE_URL)
    subscribe = "https://sns.eu-west-1.amazonaws.com/?Action=ConfirmSubscription&TopicArn=arn:aws:sns:eu-west-1:666:x"
    confirmation = sns.sign({
        "Type": "SubscriptionConfirmation", "MessageId": "m-1", "Token": "t", "TopicArn": "arn:aws:sns:eu-west-1:666:x",
        "Message": "You have chosen to subscribe.", "SubscribeURL": subscribe, "Timestamp": "2025-03-14T13:59:00.000Z",
    })  # fmt: skip
    refused = post_sns(client, url, confirmation)
    assert refused.status_code == 403 and "topic" in refused.json()["message"]
    assert subscribe not in sns.fetched
    assert post_sns(client, url, sns.sign(sample("ses-sns-bounce-notification.json"))).status_code == 403
    assert Event.objects.count() == 0
    assert set(RejectedMessage.objects.filter(source=source).values_list("code", flat=True)) == {"not_configured"}


@pytest.mark.parametrize(
    "mail",
    [{"destination": "abc"}, {"destination": []}, {"destination": [5]}],
    ids=["text not list", "nobody", "not an address"],
)
def test_ses_event_without_a_recipient_list_is_400(client, sns, mail):
    source = provider_source("ses", signing_key="arn:aws:sns:eu-west-1:123456789012:ses-feedback")
    envelope = sample("ses-sns-bounce-notification.json")
    envelope["Message"] = json.dumps({"eventType": "Delivery", "mail": mail, "delivery": {}})
    response = post_sns(client, webhook_url(source, base_url=BASE_URL), sns.sign(envelope))
    assert response.status_code == 400 and "recipient" in response.json()["message"]
    assert Event.objects.count() == 0


# --- Braze Currents --------------------------------------------------------------------------


def test_braze_currents_with_its_bearer_token(client):
    source = provider_source("braze")
    url = webhook_url(source, base_url=BASE_URL)
    body = raw_sample("braze-currents-email-events.json")
    assert post_json(client, url, body).status_code == 401
    assert post_json(client, url, body, {"Authorization": "Bearer wrong"}).status_code == 403
    assert Event.objects.count() == 0
    auth = {"Authorization": f"Bearer {source.webhook_secret}"}
    assert post_json(client, url, body, auth).status_code == 200
    sent, opened, clicked, bounced = events()
    assert [e.event for e in events()] == ["Email Sent", "Email Opened", "Email Link Clicked", "Email Bounced"]
    assert opened.properties["machine_open"] is True  # Braze's own flag ("true")
    assert clicked.properties["bot_click"] is False and clicked.properties["link_url"].endswith("/spring-sale")
    assert sent.user_id == "u_48213" and sent.anonymous_id == "65f1c0d2e3a4b5c6d7e8f901"
    assert sent.properties["campaign_name"] == "Spring sale 2025"
    assert bounced.properties["bounce_type"] == "hard"
    assert adds_nothing(lambda: post_json(client, url, body, auth))


# --- Mailchimp audience webhooks -------------------------------------------------------------


def post_form(client: Any, url: str, text: str) -> Any:
    return client.post(path_of(url), data=text, content_type="application/x-www-form-urlencoded")


def test_mailchimp_validation_get_needs_the_secret(client):
    source = provider_source("mailchimp")
    url = webhook_url(source, base_url=BASE_URL)
    assert client.get(path_of(url)).status_code == 200
    assert client.get(path_of(url).replace(source.webhook_secret, "nope")).status_code == 403
    assert client.get(path_of(url).split("?")[0]).status_code == 401


def test_mailchimp_audience_events_become_events_and_traits(client):
    source = provider_source("mailchimp")
    url = webhook_url(source, base_url=BASE_URL)
    for name in ("subscribe", "profile", "unsubscribe", "cleaned"):
        response = post_form(client, url, sample(f"mailchimp-{name}.txt"))
        assert response.status_code == 200, response.content
    tracks = {e.event: e for e in Event.objects.filter(type="track")}
    assert set(tracks) == {"Email Subscribed", "Email Profile Updated", "Unsubscribed", "Email Cleaned"}
    assert tracks["Unsubscribed"].properties["list_id"] == "a6b5da1054"
    assert tracks["Unsubscribed"].properties["campaign_id"] == "cb398d21d2"
    assert tracks["Email Cleaned"].context["traits"]["email"] == "no.such.user@example.net"
    assert tracks["Email Subscribed"].timestamp.isoformat() == "2025-03-14T14:05:12+00:00"
    identifies = list(Event.objects.filter(type="identify").order_by("id"))
    assert identifies[0].traits == {"email": "alice.martin@example.com", "firstName": "Alice", "lastName": "Martin",
                                    "mailchimp_interests": "Newsletter, Product updates",
                                    "mailchimp_status": "subscribed"}  # fmt: skip
    assert identifies[1].traits["lastName"] == "Martin-Roux"
    for name in ("subscribe", "profile", "unsubscribe", "cleaned"):
        assert adds_nothing(lambda: post_form(client, url, sample(f"mailchimp-{name}.txt")))  # noqa: B023
    assert Event.objects.count() == 8


def test_mailchimp_campaign_event_is_kept_in_the_debugger_not_as_an_event(client):
    source = provider_source("mailchimp")
    response = post_form(client, webhook_url(source, base_url=BASE_URL), sample("mailchimp-campaign.txt"))
    assert response.status_code == 200 and Event.objects.count() == 0
    assert RejectedMessage.objects.get(source=source).code == "not_stored"


def test_mailchimp_refuses_a_wrong_secret_and_a_bad_body(client):
    source = provider_source("mailchimp")
    url = webhook_url(source, base_url=BASE_URL)
    assert (
        post_form(client, url.replace(source.webhook_secret, "x"), sample("mailchimp-subscribe.txt")).status_code == 403
    )
    assert post_form(client, url, "type=subscribe&fired_at=yesterday&data%5Bemail%5D=a%40b.c").status_code == 400
    assert post_form(client, url, "nothing=here").status_code == 400
    assert Event.objects.count() == 0


def test_mailchimp_upemail_joins_the_new_address_to_the_person(client, django_capture_on_commit_callbacks):
    from profiles.selectors import profile_lookup

    source = provider_source("mailchimp")
    url = webhook_url(source, base_url=BASE_URL)
    upemail = urlencode({
        "type": "upemail", "fired_at": "2025-03-14 16:10:00", "data[list_id]": "a6b5da1054",
        "data[new_id]": "51da8c3259", "data[new_email]": "alice.roux@example.com",
        "data[old_email]": "alice.martin@example.com",
    })  # fmt: skip
    with django_capture_on_commit_callbacks(execute=True):
        assert post_form(client, url, sample("mailchimp-subscribe.txt")).status_code == 200
    with django_capture_on_commit_callbacks(execute=True):
        assert post_form(client, url, upemail).status_code == 200
    person = profile_lookup(kind="email", value="alice.martin@example.com")
    assert person is not None and profile_lookup(kind="email", value="alice.roux@example.com") == person
    assert person.traits["email"] == "alice.roux@example.com" and person.traits["firstName"] == "Alice"


def test_postmark_open_with_a_proxy_user_agent_is_a_machine_open(client):
    source = provider_source("postmark")
    url = webhook_url(source, base_url=BASE_URL)
    opened = {
        "RecordType": "Open", "MessageStream": "outbound", "FirstOpen": True, "Recipient": "alice.martin@example.com",
        "MessageID": "0f3c8a52-7e1b-4d6a-9c2f-5b8e1d4a7c91", "ReceivedAt": "2025-03-14T14:10:05Z",
        "Platform": "WebMail", "ReadSeconds": 5, "Tag": "spring_sale_2025", "Metadata": {"cdp_user_id": "u_48213"},
        "UserAgent": "Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)",
    }  # fmt: skip
    assert post_json(client, url, opened, {"Authorization": basic(url)}).status_code == 200
    (event,) = events()
    assert (event.event, event.user_id, event.properties["machine_open"]) == ("Email Opened", "u_48213", True)
    assert event.properties["campaign_name"] == "spring_sale_2025"


def test_a_multipart_post_with_a_bad_signature_is_refused_and_kept(client):
    source = provider_source("mandrill", signing_key="k", webhook_url="https://cdp.example.com/hook")
    response = client.post(f"/v1/webhooks/mandrill/{source.pk}", {"mandrill_events": "[]"},
                           headers={"X-Mandrill-Signature": "bad"})  # multipart, Django's default  # fmt: skip
    assert response.status_code == 403
    assert "mandrill_events" in RejectedMessage.objects.get(source=source).payload


ODD_BODIES = [
    b"", b"null", b"0", b'"text"', b"{}", b"[]", b"[[]]", b'[{"event": 1}]', b'{"events": "x"}',
    b'[{"event": "open", "time": 1e300, "email": "a@example.com"}]', b'[{"event": "open", "time": "soon"}]',
    b'{"RecordType": "Open", "ReceivedAt": "not a date", "Recipient": "a@example.com"}',
    b'{"events": [{"event_type": "users.messages.email.Open", "time": "x", "properties": []}]}',
    b'[{"event": "click", "email": "a@example.com", "url": "\\u0000"}]',
]  # fmt: skip


@pytest.mark.parametrize("kind", ["mailjet", "postmark", "braze"])
def test_odd_bodies_get_a_4xx_or_a_200_never_a_500(client, kind):
    source = provider_source(kind)
    url = webhook_url(source, base_url=BASE_URL)
    auth = {"Authorization": f"Bearer {source.webhook_secret}" if kind == "braze" else basic(url)}
    for body in ODD_BODIES:
        response = post_json(client, url, body, auth)
        assert response.status_code in (200, 400), (body, response.status_code, response.content)
        if response.status_code == 400:
            assert response.json()["message"]


def test_a_user_agent_that_is_not_text_is_stored_not_a_500(client):
    """A scanner-check on a number crashed crawlerdetect: the whole Braze batch was a 500."""
    client.raise_request_exception = False
    source = provider_source("braze")
    url = webhook_url(source, base_url=BASE_URL)
    click = {"event_type": "users.messages.email.Click", "id": "c-1", "time": 1741961000,
             "properties": {"email_address": "alice.martin@example.com", "url": "https://shop.example.com/x",
                            "user_agent": 5}}  # fmt: skip
    response = post_json(client, url, {"events": [click]}, {"Authorization": f"Bearer {source.webhook_secret}"})
    assert response.status_code == 200, response.content
    assert Event.objects.get().properties["bot_click"] is False
    mailjet = provider_source("mailjet")
    mj_url = webhook_url(mailjet, base_url=BASE_URL)
    opened = {**sample("mailjet-open.json"), "agent": ["not", "text"]}
    assert post_json(client, mj_url, opened, {"Authorization": basic(mj_url)}).status_code == 200
    assert Event.objects.get(event="Email Opened").properties["machine_open"] is False


@pytest.mark.parametrize(("kind", "body"), [("sendgrid", b"{}"), ("sendgrid", b'{"event": "open"}'),
                                            ("mandrill", "{}"), ("mandrill", '{"event": "open"}')])  # fmt: skip
def test_a_signed_body_that_is_not_an_array_of_events_is_400_not_silence(client, kind, body):
    if kind == "sendgrid":
        signer = SendGridSigner()
        source = provider_source("sendgrid", signing_key=signer.public_key)
        response = post_json(client, webhook_url(source, base_url=BASE_URL), body, signer.headers(body))
    else:
        source = provider_source("mandrill", signing_key="k", webhook_url="https://cdp.example.com/hook")
        form = {"mandrill_events": body}
        signed = {"X-Mandrill-Signature": mandrill_signature("k", source.webhook_url, form)}
        response = client.post(f"/v1/webhooks/mandrill/{source.pk}", data=urlencode(form),
                               content_type="application/x-www-form-urlencoded", headers=signed)  # fmt: skip
    assert response.status_code == 400, response.content
    assert "array" in response.json()["message"]
    assert RejectedMessage.objects.get(source=source).code == "invalid_payload"


def test_mandrill_inbound_events_get_a_clear_400_and_postmark_wrong_credentials_401(client):
    source = provider_source("mandrill", signing_key="k", webhook_url="https://cdp.example.com/hook")
    form = {"mandrill_events": '[{"event": "inbound", "ts": 1741960900, "msg": {"raw_msg": "Subject: hi\\n\\nhi"}}]'}
    signed = {"X-Mandrill-Signature": mandrill_signature("k", source.webhook_url, form)}
    response = client.post(f"/v1/webhooks/mandrill/{source.pk}", data=urlencode(form),
                           content_type="application/x-www-form-urlencoded", headers=signed)  # fmt: skip
    assert response.status_code == 400 and "inbound" in response.json()["message"]
    postmark = provider_source("postmark")
    url = webhook_url(postmark, base_url=BASE_URL)
    wrong = post_json(
        client,
        url,
        raw_sample("postmark-bounce.json"),
        {"Authorization": basic(url.replace(postmark.webhook_secret, "wrong"))},
    )
    assert wrong.status_code == 401 and Event.objects.count() == 0


def test_used_tokens_are_kept_only_while_their_timestamp_could_be_accepted(client):
    from datetime import timedelta

    from django.utils import timezone

    from ingest.debugger import debugger_trim
    from ingest.models import WebhookToken

    source = provider_source("mailgun", signing_key=MAILGUN_KEY)
    assert (
        post_json(
            client, webhook_url(source, base_url=BASE_URL), mailgun_signed(sample("mailgun-opened.json"))
        ).status_code
        == 200
    )
    WebhookToken.objects.create(
        source=source, token="old", body_sha256="x", seen_at=timezone.now() - timedelta(hours=1)
    )
    debugger_trim()
    assert list(WebhookToken.objects.values_list("token", flat=True)) != ["old"]
    assert WebhookToken.objects.count() == 1
