"""Provider sources: `create_source --kind` prints the URL to paste on its last line, with the
secret in it where the provider authenticates by the URL; the admin shows the same."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from ingest.models import Source

pytestmark = pytest.mark.django_db


def run(*args: str) -> list[str]:
    out = StringIO()
    call_command("create_source", *args, "--base-url", "https://cdp.example.com", stdout=out, stderr=StringIO())
    return out.getvalue().strip().splitlines()


@pytest.mark.parametrize(
    ("kind", "shape"),
    [
        ("mailjet", "https://cdp:{secret}@cdp.example.com/v1/webhooks/mailjet/{pk}"),
        ("postmark", "https://cdp:{secret}@cdp.example.com/v1/webhooks/postmark/{pk}"),
        ("mailchimp", "https://cdp.example.com/v1/webhooks/mailchimp/{pk}?secret={secret}"),
        ("sendgrid", "https://cdp.example.com/v1/webhooks/sendgrid/{pk}"),
        ("mailgun", "https://cdp.example.com/v1/webhooks/mailgun/{pk}"),
        ("ses", "https://cdp.example.com/v1/webhooks/ses/{pk}"),
        ("braze", "https://cdp.example.com/v1/webhooks/braze/{pk}"),
        ("mandrill", "https://cdp.example.com/v1/webhooks/mandrill/{pk}"),
    ],
)
def test_create_source_prints_the_webhook_url_last(kind, shape):
    lines = run(f"My {kind}", "--kind", kind)
    source = Source.objects.get(name=f"My {kind}")
    assert source.kind == kind
    assert lines[-1] == shape.format(secret=source.webhook_secret, pk=source.pk)
    if kind == "braze":
        assert lines[0].endswith(source.webhook_secret)  # the bearer token, before the URL


def test_signing_key_and_registered_url_are_stored_and_mandrill_keeps_the_printed_url():
    url = run("Transactional", "--kind", "mandrill")[-1]
    source = Source.objects.get(name="Transactional")
    assert source.webhook_url == url  # Mandrill signs the URL it was given
    assert run("Transactional", "--kind", "mandrill", "--signing-key", "abc123")[-1] == url
    source.refresh_from_db()
    assert source.signing_key == "abc123"
    run("Transactional", "--webhook-url", "https://proxy.example.com/hooks/mandrill")
    source.refresh_from_db()
    assert source.webhook_url == "https://proxy.example.com/hooks/mandrill"
    with pytest.raises(CommandError):
        run("Transactional", "--kind", "mailjet")


@pytest.mark.parametrize(
    ("kind", "shape"),
    [
        ("mailjet", "https://cdp:{secret}@proxy.example.com/hooks/esp"),
        ("postmark", "https://cdp:{secret}@proxy.example.com/hooks/esp"),
        ("mailchimp", "https://proxy.example.com/hooks/esp?secret={secret}"),
    ],
)
def test_a_registered_url_still_carries_the_secret_where_the_provider_needs_it(kind, shape):
    lines = run("Behind a proxy", "--kind", kind, "--webhook-url", "https://proxy.example.com/hooks/esp")
    source = Source.objects.get(name="Behind a proxy")
    assert lines[-1] == shape.format(secret=source.webhook_secret)


def test_admin_shows_the_webhook_url(admin_client, settings):
    settings.CDP_PUBLIC_URL = "https://cdp.example.com"
    url = run("Newsletter", "--kind", "mailjet")[-1]
    source = Source.objects.get(name="Newsletter")
    page = admin_client.get(f"/admin/ingest/source/{source.pk}/change/").content.decode()
    assert f'<code id="webhook-url">{url}</code>' in page


def test_braze_takes_the_given_key_as_its_bearer_token():
    lines = run("Braze", "--kind", "braze", "--signing-key", "my-currents-token")
    source = Source.objects.get(name="Braze")
    assert source.webhook_secret == "my-currents-token" and lines[0].endswith("my-currents-token")
    generated = run("Braze 2", "--kind", "braze")
    assert generated[0].endswith(Source.objects.get(name="Braze 2").webhook_secret)


def _refused(*args: str) -> str:
    with pytest.raises(CommandError) as caught:
        call_command("create_source", *args, stdout=StringIO(), stderr=StringIO())
    return str(caught.value)


@pytest.mark.parametrize(
    ("args", "flag"),
    [
        (("Site", "--signing-key", "k"), "--signing-key"),
        (("Site", "--webhook-url", "https://x.example/h"), "--webhook-url"),
        (("Site", "--base-url", "https://x.example"), "--base-url"),
        (("MJ", "--kind", "mailjet", "--signing-key", "k"), "--signing-key"),
        (("PM", "--kind", "postmark", "--signing-key", "k"), "--signing-key"),
        (("MC", "--kind", "mailchimp", "--signing-key", "k"), "--signing-key"),
        (("MG", "--kind", "mailgun", "--write-key", "k"), "--write-key"),
        (("BZ", "--kind", "braze", "--write-key", "k"), "--write-key"),
    ],
)
def test_a_flag_that_does_not_apply_to_the_kind_is_refused(args, flag):
    message = _refused(*args)
    assert flag in message and "does not apply" in message
    assert not Source.objects.exists()  # nothing half-made


def test_flags_are_checked_against_an_existing_sources_kind():
    run("Letters", "--kind", "mailjet")
    assert "--signing-key" in _refused("Letters", "--signing-key", "k")
