"""The providers' pure parsers, without a database: shapes, ids, identity, flags."""

from __future__ import annotations

import json

import pytest

from ingest.providers import braze, common, mailchimp, ses
from tests.ingest.esp import sample


def test_mailchimp_brackets_unflatten_to_nested_fields():
    form = {"type": "profile", "data[merges][FNAME]": "Alice", "data[merges][ADDRESS][city]": "Paris",
            "data[email]": "a@example.com"}  # fmt: skip
    assert mailchimp.unflatten(form) == {
        "type": "profile",
        "data": {"merges": {"FNAME": "Alice", "ADDRESS": {"city": "Paris"}}, "email": "a@example.com"},
    }


def test_mailchimp_upemail_carries_both_addresses_in_one_identify():
    form = {"type": "upemail", "fired_at": "2025-03-14 16:10:00", "data[list_id]": "a6b5da1054",
            "data[new_id]": "51da8c3259", "data[new_email]": "alice.roux@example.com",
            "data[old_email]": "alice.martin@example.com"}  # fmt: skip
    identify, track = mailchimp.messages_from_mailchimp(form)[0]
    assert identify["traits"]["email"] == "alice.roux@example.com"
    assert identify["context"]["traits"]["email"] == "alice.martin@example.com"
    assert track["event"] == "Email Address Changed"
    assert track["properties"]["old_email"] == "alice.martin@example.com"
    again = mailchimp.messages_from_mailchimp(form)[0]
    assert [m["messageId"] for m in again] == [identify["messageId"], track["messageId"]]


@pytest.mark.parametrize("form", [{"type": "subscribe"}, {"data[email]": "a@b.c"}, {"type": "nope", "data[x]": "1"}])
def test_mailchimp_bad_forms_are_payload_errors(form):
    with pytest.raises(common.PayloadError):
        mailchimp.messages_from_mailchimp(form)


def test_stable_ids_fit_and_differ_by_provider_and_key():
    a = common.stable_message_id("sendgrid", "x" * 500)
    assert len(a) <= 100 and a == common.stable_message_id("sendgrid", "x" * 500)
    assert a != common.stable_message_id("mailjet", "x" * 500) != common.stable_message_id("sendgrid", "y")


def test_passthrough_user_id_and_machine_user_agents():
    assert common.passthrough_user_id({"cdp_user_id": " u1 "}) == "u1"
    assert common.passthrough_user_id({"user_id": 42}) == "42"
    assert common.passthrough_user_id({"cdp_user_id": True}) is None and common.passthrough_user_id(None) is None
    assert common.machine_user_agent("Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com "
                                     "GoogleImageProxy)")  # fmt: skip
    assert not common.machine_user_agent(sample("mailjet-open.json")["agent"])
    assert not common.machine_user_agent(None)


def test_ses_bounce_is_one_message_per_bounced_recipient():
    envelope = sample("ses-sns-bounce-notification.json")
    event = json.loads(envelope["Message"])
    event["bounce"]["bouncedRecipients"].append({"emailAddress": "second@example.net", "status": "5.1.1"})
    envelope["Message"] = json.dumps(event)
    messages = ses.messages_from_ses(envelope)
    assert [m["context"]["traits"]["email"] for m in messages] == ["no.such.user@example.net", "second@example.net"]
    assert len({m["messageId"] for m in messages}) == 2
    assert all(m["properties"]["bounce_type"] == "hard" for m in messages)


def test_ses_canonical_string_follows_sns():
    envelope = sample("ses-sns-bounce-notification.json")
    text = ses.canonical_string(envelope).decode()
    assert text.startswith("Message\n{") and "\nMessageId\n3d9a1c52-8b7e-5f40-a1d2-9c8b7a6e5f43\n" in text
    assert text.endswith("TopicArn\narn:aws:sns:eu-west-1:123456789012:ses-feedback\nType\nNotification\n")
    assert "\nSubject\n" not in text  # absent fields are left out
    assert ses.aws_url("https://sns.eu-west-1.amazonaws.com/x.pem")
    assert not ses.aws_url("https://sns.eu-west-1.amazonaws.com.evil.example/x.pem")
    assert not ses.aws_url("http://sns.eu-west-1.amazonaws.com/x.pem")


def test_braze_keeps_non_email_currents_under_their_own_type():
    event = {"event_type": "users.behaviors.subscription.GlobalStateChange", "id": "e1", "time": 1,
             "user": {"external_user_id": "u1"}, "properties": {"email_address": "a@example.com"}}  # fmt: skip
    body = {"events": [event]}
    (message,) = braze.messages_from_braze(body)
    assert message["event"] == "users.behaviors.subscription.GlobalStateChange" and message["userId"] == "u1"
    with pytest.raises(common.PayloadError):
        braze.messages_from_braze({"events": [{"id": "no type"}]})
    with pytest.raises(common.PayloadError):
        braze.messages_from_braze([])


@pytest.mark.parametrize(
    ("preferences", "expected"),
    [
        ({"unsubscribeAll": True, "topicSubscriptionStatus": []}, "Unsubscribed"),
        ({"unsubscribeAll": False, "topicSubscriptionStatus": [{"topicName": "News", "subscriptionStatus": "OptOut"}]},
         "Unsubscribed"),
        ({"unsubscribeAll": False, "topicSubscriptionStatus": [{"topicName": "News", "subscriptionStatus": "OptIn"}]},
         "Email Subscribed"),
    ],
)  # fmt: skip
def test_ses_subscription_event_says_which_way_the_person_went(preferences, expected):
    envelope = sample("ses-sns-bounce-notification.json")
    event = json.loads(envelope["Message"])
    event.pop("bounce", None)
    event.pop("notificationType", None)
    event["eventType"] = "Subscription"
    event["subscription"] = {
        "contactList": "Newsletter",
        "timestamp": "2022-01-12T01:00:14.340Z",
        "source": "UnsubscribeHeader",
        "newTopicPreferences": preferences,
    }
    envelope["Message"] = json.dumps(event)
    assert [m["event"] for m in ses.messages_from_ses(envelope)] == [expected] * len(event["mail"]["destination"])
