"""The email pixel and tracked links (segment-spec sections 2-3)."""

from __future__ import annotations

import base64
from io import StringIO
from urllib.parse import parse_qsl, urlsplit

import orjson
import pytest
from django.core.management import call_command

from ingest.models import RejectedMessage, Source
from ingest.services import tracked_link
from profiles.models import Event

pytestmark = pytest.mark.django_db
GIF_MAGIC = b"GIF89a"


def assert_gif(response):
    assert response.status_code == 200
    assert response["Content-Type"] == "image/gif"
    assert response.content.startswith(GIF_MAGIC)
    assert "no-store" in response["Cache-Control"] and response["Pragma"] == "no-cache"


def b64(data: dict, urlsafe: bool = True, pad: bool = False) -> str:
    raw = orjson.dumps(data)
    text = (base64.urlsafe_b64encode(raw) if urlsafe else base64.b64encode(raw)).decode()
    return text if pad else text.rstrip("=")


@pytest.mark.parametrize(("urlsafe", "pad"), [(True, False), (False, True)])
def test_pixel_with_base64_data_records_the_open(client, source, urlsafe, pad):
    data = {"writeKey": source.write_key, "userId": "u1", "event": "Email Opened",
            "properties": {"email_subject": "Winter sale ✓", "campaign_id": "c-9"}}  # fmt: skip
    response = client.get("/v1/pixel/track", {"data": b64(data, urlsafe, pad)}, headers={"User-Agent": "Mail/1"})
    assert_gif(response)
    e = Event.objects.get()
    assert (e.type, e.event, e.user_id) == ("track", "Email Opened", "u1")
    assert e.properties == {"email_subject": "Winter sale ✓", "campaign_id": "c-9"}
    assert e.context["userAgent"] == "Mail/1" and e.context["ip"] == "127.0.0.1"


def test_pixel_with_plain_dotted_parameters(client, source):
    response = client.get(
        "/v1/pixel/track",
        {"userId": "user_123", "event": "Email Opened", "properties.subject": "Hi",
         "properties.email": "a@b.co", "context.traits.email": "a@b.co", "writeKey": source.write_key},
    )  # fmt: skip
    assert_gif(response)
    e = Event.objects.get()
    assert e.properties == {"subject": "Hi", "email": "a@b.co"}
    assert e.context["traits"] == {"email": "a@b.co"}


def test_pixel_identify_with_traits(client, source):
    assert_gif(client.get("/v1/pixel/identify", {"userId": "u1", "traits.name": "Ada", "writeKey": source.write_key}))
    assert Event.objects.get().traits == {"name": "Ada"}


@pytest.mark.parametrize(
    ("path", "params", "code"),
    [
        ("/v1/pixel/track", {"event": "Email Opened"}, "unauthorized"),
        ("/v1/pixel/track", {"data": "%%%not-base64"}, "invalid_data"),
        ("/v1/pixel/track", {"data": b64({"event": "x"})[:-3] + "A"}, "invalid_json"),
        ("/v1/pixel/track", {"userId": "u1"}, "missing_event"),
        ("/v1/pixel/purchase", {"userId": "u1"}, "invalid_type"),
    ],
)
def test_pixel_problems_still_get_the_gif_and_go_to_the_debugger(client, source, path, params, code):
    if code != "unauthorized" and "data" not in params:
        params = {**params, "writeKey": source.write_key}
    if "data" in params:
        params = {**params, "writeKey": source.write_key}
    assert_gif(client.get(path, params))
    assert Event.objects.count() == 0
    assert RejectedMessage.objects.get().code == code


def test_pixel_does_not_record_the_write_key(client, source):
    client.get("/v1/pixel/page", {"anonymousId": "a", "writeKey": source.write_key})
    assert Event.objects.get().extra is None


# --- Tracked links ---------------------------------------------------------------------------


def click(client, link: str, **headers):
    parts = urlsplit(link)
    return client.get(parts.path, dict(parse_qsl(parts.query)), headers=headers)


def test_signed_link_records_identify_and_track_then_redirects(client, source):
    link = tracked_link(
        source=source, url="https://shop.example/sale?utm_source=email", base_url="https://cdp.example",
        user_id="u1", properties={"campaign_id": "c-9"}, traits={"plan": "pro"},
    )  # fmt: skip
    assert link.startswith("https://cdp.example/v1/click?")
    response = click(client, link, User_Agent="Mozilla/5.0")
    assert response.status_code == 302
    assert response["Location"] == "https://shop.example/sale?utm_source=email"
    identify, track = Event.objects.order_by("id")
    assert (identify.type, identify.user_id, identify.traits) == ("identify", "u1", {"plan": "pro"})
    assert (track.type, track.event, track.user_id) == ("track", "Email Link Clicked", "u1")
    assert track.properties == {"campaign_id": "c-9", "link_url": "https://shop.example/sale?utm_source=email"}
    assert track.context["userAgent"] == "Mozilla/5.0"


def test_link_with_custom_event_and_anonymous_id_records_only_a_track(client, source):
    link = tracked_link(source=source, url="https://a.example/", base_url="", anonymous_id="anon-1",
                        event="Promo Clicked")  # fmt: skip
    assert click(client, link).status_code == 302
    e = Event.objects.get()
    assert (e.type, e.event, e.anonymous_id, e.user_id) == ("track", "Promo Clicked", "anon-1", None)


@pytest.mark.parametrize(
    "tamper",
    [
        lambda q: {**q, "url": "https://evil.example/"},
        lambda q: {**q, "ajs_uid": "someone-else"},
        lambda q: {k: v for k, v in q.items() if k != "sig"},
        lambda q: {**q, "sig": "0" * 32},
    ],
)
def test_tampered_or_unsigned_link_gets_400_and_no_redirect(client, source, tamper):
    link = tracked_link(source=source, url="https://shop.example/", base_url="", user_id="u1")
    query = tamper(dict(parse_qsl(urlsplit(link).query)))
    response = client.get("/v1/click", query)
    assert response.status_code == 400
    assert "Location" not in response
    assert Event.objects.count() == 0
    assert RejectedMessage.objects.get().code == "unsafe_redirect"


def test_unsigned_link_to_an_allowed_domain_redirects(client, source):
    source.allowed_redirect_domains = "shop.example\nblog.example"
    source.save()
    query = {"writeKey": source.write_key, "url": "https://www.shop.example/x", "ajs_uid": "u1"}
    response = client.get("/v1/click", query)
    assert response.status_code == 302 and response["Location"] == "https://www.shop.example/x"
    assert client.get("/v1/click", {**query, "url": "https://shop.example.evil.com/"}).status_code == 400


@pytest.mark.parametrize(
    "url",
    [
        "https://evil.example\\@shop.example/",  # browsers read evil.example as the host; urlsplit reads shop.example
        "https://evil.example\\.shop.example/",
        "https://evil.example%5C@shop.example/",
        "https://user@shop.example.evil.com@shop.example/",
        "https://evil.example\t@shop.example/",
    ],
)
def test_an_unsigned_link_that_only_looks_like_an_allowed_domain_is_refused(client, source, url):
    """Python's urlsplit and a browser disagree on where the host of these ends: the link must
    never redirect where the browser would go (evil.example)."""
    source.allowed_redirect_domains = "shop.example"
    source.save()
    response = client.get("/v1/click", {"writeKey": source.write_key, "url": url, "ajs_uid": "u1"})
    assert response.status_code == 400 and "Location" not in response


@pytest.mark.parametrize("url", ["javascript:alert(1)", "//evil.example/", "/relative", "data:text/html,hi"])
def test_links_to_non_http_targets_are_refused_even_when_signed(client, source, url):
    from ingest import links

    pairs = [("writeKey", source.write_key), ("url", url)]
    pairs.append(("sig", links.link_signature(pairs, source.signing_secret)))
    response = client.get("/v1/click", dict(pairs))
    assert response.status_code == 400 and "Location" not in response


def test_link_signed_by_another_source_is_refused(client, source):
    other = Source.objects.create(name="Other")
    link = tracked_link(source=other, url="https://shop.example/", base_url="", user_id="u1")
    query = dict(parse_qsl(urlsplit(link).query))
    query["writeKey"] = source.write_key
    assert client.get("/v1/click", query).status_code == 400


def test_click_without_identity_redirects_and_goes_to_the_debugger(client, source):
    link = tracked_link(source=source, url="https://shop.example/", base_url="")
    assert click(client, link).status_code == 302
    assert Event.objects.count() == 0
    assert RejectedMessage.objects.get().code == "missing_identity"


def test_tracked_link_command_prints_a_working_link(client, source):
    out = StringIO()
    call_command(
        "tracked_link", "--source", source.name, "--url", "https://shop.example/", "--user-id", "u7",
        "--event", "CTA Clicked", "--property", "campaign_id=c-1", "--base-url", "https://cdp.example", stdout=out,
    )  # fmt: skip
    link = out.getvalue().strip().splitlines()[-1]
    assert click(client, link).status_code == 302
    e = Event.objects.get(type="track")
    assert (e.event, e.user_id, e.properties["campaign_id"]) == ("CTA Clicked", "u7", "c-1")
