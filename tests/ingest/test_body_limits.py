"""A body over Django's guards (5 MB, or more than 1,000 form fields) is answered in the API's
JSON error shape, never Django's HTML 400, and counted in the ingest debugger."""

from __future__ import annotations

import pytest

from ingest.models import IngestCounter, RejectedMessage, Source
from tests.conftest import basic_auth

pytestmark = pytest.mark.django_db

SIX_MB = b"x" * (6 * 1024 * 1024)


def test_the_tracking_api_answers_json_400_and_the_debugger_counts_it(client, source):
    response = client.post("/v1/batch", SIX_MB, content_type="application/json",
                           headers={"Authorization": basic_auth(source.write_key)})  # fmt: skip
    assert response.status_code == 400 and response["Content-Type"] == "application/json"
    assert response.json() == {"code": "payload_too_large",
                               "message": "Exceed payload limit: the body is over 512000 bytes."}  # fmt: skip
    refused = RejectedMessage.objects.get()
    assert (refused.source, refused.code, refused.endpoint) == (source, "payload_too_large", "batch")
    assert str(len(SIX_MB)) in refused.payload
    assert IngestCounter.objects.get(source=source).rejected == 1


def test_without_a_known_key_it_is_kept_with_the_unknown_source(client):
    response = client.post("/v1/track", SIX_MB, content_type="text/plain")
    assert response.status_code == 400 and response.json()["code"] == "payload_too_large"
    assert RejectedMessage.objects.get().source is None


@pytest.mark.parametrize("kind", ["mailjet", "mailchimp"])
def test_a_webhook_answers_json_400_for_its_source(client, kind):
    source = Source.objects.create(name=kind, kind=kind)
    content_type = "application/json" if kind == "mailjet" else "application/x-www-form-urlencoded"
    auth = {"Authorization": basic_auth(f"cdp:{source.webhook_secret}", colon=False)}
    response = client.post(f"/v1/webhooks/{kind}/{source.pk}?secret={source.webhook_secret}", SIX_MB,
                           content_type=content_type, headers=auth)  # fmt: skip
    assert response.status_code == 400 and response["Content-Type"] == "application/json"
    assert response.json() == {"code": "payload_too_large",
                               "message": "Exceed payload limit: the body is over 5242880 bytes."}  # fmt: skip
    assert RejectedMessage.objects.get().source == source


def test_a_form_with_too_many_fields_answers_json_400(client):
    source = Source.objects.create(name="Mailchimp", kind="mailchimp")
    form = "&".join(f"data[merges][F{i}]=v" for i in range(1200)).encode()
    response = client.post(f"/v1/webhooks/mailchimp/{source.pk}?secret={source.webhook_secret}", form,
                           content_type="application/x-www-form-urlencoded")  # fmt: skip
    assert response.status_code == 400
    assert response.json() == {"code": "payload_too_large",
                               "message": "Exceed payload limit: the form has more than 1000 fields."}  # fmt: skip
    assert RejectedMessage.objects.get().source == source
