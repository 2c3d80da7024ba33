"""The admin profile page, its timeline and the profile list, through the admin over HTTP."""

from __future__ import annotations

import re
from html import unescape

import pytest
from django.contrib.auth.models import Permission, User
from django.db import connection
from django.test.utils import CaptureQueriesContext

from profiles.counting import queryset_count_estimate
from profiles.models import Event, Identity, Merge, Profile
from tests.profiles.admin_demo import LAPTOP, PHONE, send_ana

pytestmark = pytest.mark.django_db


@pytest.fixture
def ana(send):
    send_ana(send)
    return Identity.objects.get(kind="user_id", value="ana-1042").profile


def url(profile, **query):
    from urllib.parse import urlencode

    return f"/admin/profiles/profile/{profile.pk}/change/" + (f"?{urlencode(query, doseq=True)}" if query else "")


def timeline_merges(response):
    return response.content.decode().count('class="pp-merge-item"')


def text(response):
    """What a reader sees: tags stripped, entities decoded, spaces collapsed."""
    return " ".join(unescape(re.sub(r"<[^>]+>", " ", response.content.decode())).split())


def timeline_ids(response):
    """Message ids of the events on the timeline, top to bottom."""
    return re.findall(r'class="pp-event[^"]*" data-message-id="([^"]+)"', response.content.decode())


def test_profile_page_shows_the_person(admin_client, ana):
    response = admin_client.get(url(ana))
    assert response.status_code == 200
    seen = text(response)
    header = seen[: seen.index("Custom traits")]
    assert "Ana Lima" in header and "ana@lima.example" in header and ana.key in header
    assert "First seen 10 Nov 2026, 09:12" in header and "Last seen 12 Nov 2026, 19:12" in header
    assert "Events 10" in header

    # Traits with when and from which message each was set; the phone's identify set the phone.
    assert re.search(r"city Porto 10 Nov 2026, 09:31 Website \(#\d+\) m-signup", seen)  # the source by name
    assert re.search(r"phone \+351 912 000 111 12 Nov 2026, 19:07 Website \(#\d+\) m-merge", seen)
    assert 'company {"name":"Lima & Filhos"}' in seen
    # Identities with provenance.
    assert f"anonymous_id {PHONE} 2026-11-12 19:05 2026-11-12 19:12 m-phone Website (#" in seen


@pytest.mark.postgres
def test_the_header_estimates_a_big_event_count(admin_client, ana, monkeypatch):
    monkeypatch.setattr("profiles.profile_page.EVENT_COUNT_UP_TO", 7)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE profiles_event")
    assert "Events about 10 Identifiers" in text(admin_client.get(url(ana)))  # PostgreSQL's estimate


def test_identity_graph_draws_identifiers_and_marks_the_merge(admin_client, ana):
    html = admin_client.get(url(ana)).content.decode()
    start = html.index('class="identity-graph"')
    svg = html[start : html.index("</svg>", start)]
    nodes = dict(re.findall(r'<g class="node" data-id="(\d+)" data-kind="[^"]+" data-value="([^"]+)"', svg))
    assert sorted(nodes.values()) == sorted(["ana-1042", "ana@lima.example", LAPTOP, PHONE])
    edges = re.findall(r'<line class="edge( merge)?" data-a="(\d+)" data-b="(\d+)"', svg)
    merged = [{nodes[a], nodes[b]} for m, a, b in edges if m]
    assert merged == [{"ana@lima.example", PHONE}]  # the identify that merged the phone into Ana
    assert len(edges) >= 4 and "merge triggered by message m-merge" in svg


def test_timeline_reads_newest_first_by_day_with_email_details_urls_and_the_merge_inline(admin_client, ana):
    response = admin_client.get(url(ana))
    assert timeline_ids(response) == ["m-order", "m-merge", "m-phone", "m-clicked", "m-opened", "m-delivered",
                                      "m-signup", "m-viewed", "m-sale", "m-home"]  # fmt: skip
    seen = text(response)
    days = [seen.index(day) for day in ("Thursday 12 November 2026", "Wednesday 11 November 2026",
                                        "Tuesday 10 November 2026")]  # fmt: skip
    assert days == sorted(days)
    # The merge sits just above the message that triggered it.
    merge = seen.index(f"Merged {Merge.objects.get().loser.key} into {ana.key}")
    assert seen.index("Order Completed") < merge < seen.index("Identified Traits set email, phone")
    assert "Email Opened Subject Spring sale starts now Campaign spring_sale_2025 (7812345)" in seen
    assert "Link https://shop.example.com/spring-sale" in seen
    assert "Viewed Winter sale URL https://shop.example.com/winter-sale" in seen
    html = response.content.decode()
    assert '<a href="https://shop.example.com/spring-sale" rel="noopener noreferrer"' in html
    # Each event expands to its full message.
    opened = html[html.index('data-message-id="m-opened"') :]
    assert "<details>" in opened[:200] and "&quot;campaign_id&quot;: &quot;7812345&quot;" in opened


def test_timeline_filters(admin_client, ana):
    assert timeline_ids(admin_client.get(url(ana, type="page"))) == ["m-phone", "m-sale", "m-home"]
    both = admin_client.get(url(ana, event="Email Opened, Order Completed"))
    assert timeline_ids(both) == ["m-order", "m-opened"]
    assert timeline_merges(both) == 0  # filtered to events: merges are not events
    day = admin_client.get(url(ana, start="2026-11-11", end="2026-11-11"))
    assert timeline_ids(day) == ["m-clicked", "m-opened", "m-delivered"]
    after = admin_client.get(url(ana, start="2026-11-12"))
    assert timeline_merges(after) == 1 and timeline_ids(after) == ["m-order", "m-merge", "m-phone"]
    assert "No events match these filters." in text(admin_client.get(url(ana, type="alias")))


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ({"cursor": "not-a-cursor"}, "Page: This page link is not valid; start again from the newest events."),
        ({"start": "yesterday"}, "Start: Enter a valid date."),
        ({"start": "2026-11-12", "end": "2026-11-10"}, "The start date is after the end date."),
        ({"type": "purchase"}, "Type: Select a valid choice. purchase is not one of the available choices."),
    ],
)
def test_bad_filter_input_is_a_clear_400(admin_client, ana, query, message):
    response = admin_client.get(url(ana, **query))
    assert response.status_code == 400
    assert message in text(response) and "Ana Lima" in text(response)  # the page is still there


def test_cursor_pages_through_the_timeline_without_repeat_or_skip(admin_client, ana, send, monkeypatch):
    monkeypatch.setattr("profiles.admin.TIMELINE_PAGE", 4)
    same = "2026-11-11T08:40:00Z"  # ties with m-opened: the keyset must still order them
    send(*[{"type": "track", "userId": "ana-1042", "event": f"Tie {i}", "timestamp": same, "messageId": f"t{i}"}
           for i in range(5)])  # fmt: skip
    seen, merges, page = [], 0, url(ana)
    while page:
        response = admin_client.get(page)
        assert response.status_code == 200
        seen += timeline_ids(response)
        merges += timeline_merges(response)
        older = re.search(r'<a href="([^"]+)" class="button" id="older">', response.content.decode())
        page = unescape(older.group(1)) if older else None
    expected = Event.objects.filter(profile=ana).order_by("-timestamp", "-id").values_list("message_id", flat=True)
    assert seen == list(expected) and len(seen) == 15
    assert merges == 1


def test_unknown_or_malformed_profile_id_is_404(admin_client, db):
    assert admin_client.get("/admin/profiles/profile/987654/change/").status_code == 404
    assert admin_client.get("/admin/profiles/profile/nope/change/").status_code == 404


def test_a_merged_away_profile_redirects_to_the_winner(admin_client, ana):
    loser = Merge.objects.get().loser
    response = admin_client.get(url(loser, type="page"))
    assert response.status_code == 302 and response["Location"] == url(ana, type="page")


def test_profile_page_query_count_does_not_grow_with_the_profile(admin_client, ana, send, django_assert_num_queries):
    admin_client.get(url(ana))  # warm the session and content types (16: one names the sources, one reads
    with django_assert_num_queries(16):  # the computed traits with this profile's values, one its audiences)
        assert admin_client.get(url(ana)).status_code == 200
    send(*[{"type": "track", "userId": "ana-1042", "anonymousId": f"device-{i}", "event": "Seen",
            "timestamp": f"2026-11-13T10:{i:02d}:00Z"} for i in range(4)])  # fmt: skip
    send(*[{"type": "page", "userId": "ana-1042", "name": f"P{i}", "timestamp": f"2026-11-14T10:{i:02d}:00Z"}
           for i in range(60)])  # fmt: skip
    with django_assert_num_queries(16):
        assert admin_client.get(url(ana)).status_code == 200


def test_view_only_staff_read_the_page_without_split_or_remove(client, ana):
    marketer = User.objects.create_user("marketer", password="pw", is_staff=True)
    marketer.user_permissions.add(Permission.objects.get(codename="view_profile"))
    client.force_login(marketer)
    response = client.get(url(ana))
    assert response.status_code == 200 and "Ana Lima" in text(response)
    assert "Split the checked" not in text(response) and 'name="remove"' not in response.content.decode()
    refused = client.post(f"/admin/profiles/profile/{ana.pk}/identity/", {"remove": f"anonymous_id:{PHONE}",
                                                                          "reason": "x"})  # fmt: skip
    assert refused.status_code == 403
    assert Identity.objects.get(kind="anonymous_id", value=PHONE).profile == ana


def test_split_from_the_profile_page_comes_back_to_it(admin_client, ana):
    form = {"identifier": [f"anonymous_id:{PHONE}"], "reason": "shared phone", "split": "1", "next": url(ana)}
    response = admin_client.post(f"/admin/profiles/profile/{ana.pk}/identity/", form)
    assert response.status_code == 302 and response["Location"] == url(ana)
    assert Identity.objects.get(kind="anonymous_id", value=PHONE).profile != ana
    page = admin_client.get(url(ana))
    assert "Split admin shared phone" in text(page)  # the history lists the split with its reason
    outside = admin_client.post(
        f"/admin/profiles/profile/{ana.pk}/identity/", {**form, "next": "https://evil.example/"}
    )
    assert outside["Location"] == f"/admin/profiles/profile/{ana.pk}/identity/"


# --- The list -------------------------------------------------------------------------------


def listed(response):
    return re.findall(
        r'<th class="field-key"><a href="/admin/profiles/profile/(\d+)/change/', response.content.decode()
    )


@pytest.mark.parametrize("term", ["ana@lima.example", "ana-1042", LAPTOP, "lima.exam", "Porto"])
def test_list_search_by_identifier_email_or_trait(admin_client, ana, send, term):
    send({"type": "identify", "userId": "bo-7", "traits": {"name": "Bo Berg", "email": "bo@berg.example"}})
    response = admin_client.get("/admin/profiles/profile/", {"q": term})
    assert response.status_code == 200 and listed(response) == [str(ana.pk)]


def test_list_shows_key_traits_and_filters_by_last_seen_and_email(admin_client, ana, send):
    from django.utils import timezone

    now = timezone.now().strftime("%Y-%m-%dT%H:%M:%SZ")
    send({"type": "page", "anonymousId": "fresh-visitor", "name": "Home", "timestamp": now})
    fresh = Identity.objects.get(value="fresh-visitor").profile
    response = admin_client.get("/admin/profiles/profile/")
    assert listed(response) == [str(fresh.pk), str(ana.pk)]  # last seen first
    row = text(response)
    assert f"{ana.key} Ana Lima ana@lima.example Nov. 12, 2026, 7:12 p.m." in row
    assert Merge.objects.get().loser.key not in row  # a merged-away profile is not a person
    assert listed(admin_client.get("/admin/profiles/profile/", {"seen": "24h"})) == [str(fresh.pk)]
    assert listed(admin_client.get("/admin/profiles/profile/", {"seen": "over90d"})) == []
    assert listed(admin_client.get("/admin/profiles/profile/", {"email": "yes"})) == [str(ana.pk)]
    assert listed(admin_client.get("/admin/profiles/profile/", {"email": "no"})) == [str(fresh.pk)]


def test_list_query_count_does_not_grow_with_rows(admin_client, ana, send, django_assert_num_queries):
    admin_client.get("/admin/profiles/profile/")
    with CaptureQueriesContext(connection) as few:
        assert len(listed(admin_client.get("/admin/profiles/profile/"))) == 1
    queries = len(few)  # now: the next request clears the log it reads from
    send(*[{"type": "identify", "userId": f"u{i}", "traits": {"name": f"P {i}", "email": f"p{i}@x.example"}}
           for i in range(30)])  # fmt: skip
    with django_assert_num_queries(queries):
        assert len(listed(admin_client.get("/admin/profiles/profile/"))) == 31


@pytest.mark.postgres
def test_list_never_counts_the_whole_table(admin_client, ana, send, monkeypatch):
    """Past EXACT_COUNT_UP_TO rows the count is PostgreSQL's estimate: pg_class.reltuples for
    the whole table, EXPLAIN's estimate for a filtered list. (The bound is lowered here.)"""
    monkeypatch.setattr("profiles.admin_list.EXACT_COUNT_UP_TO", 5)
    Profile.objects.bulk_create([Profile(traits={"name": f"P{i}"}) for i in range(80)])
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE profiles_profile")
    with CaptureQueriesContext(connection) as queries:
        response = admin_client.get("/admin/profiles/profile/")
    assert response.status_code == 200
    counts = [q["sql"] for q in queries if "COUNT(" in q["sql"].upper()]
    assert all("LIMIT 6" in sql for sql in counts), counts  # only capped counts: never the whole table
    assert any("EXPLAIN" in q["sql"] for q in queries)  # the live (filtered) list is estimated
    assert re.search(r"\b8\d results\b", text(response))  # about 82 live profiles
    with CaptureQueriesContext(connection) as queries:
        assert 75 < queryset_count_estimate(Profile.objects.all(), exact_up_to=5)[0] < 90  # the whole table
    assert [q["sql"] for q in queries] == [
        "SELECT reltuples::bigint FROM pg_class WHERE oid = 'profiles_profile'::regclass"
    ]


@pytest.mark.parametrize(
    "term", ["contains:x", "has_key:name", "name__contains:x", ":", "email:", "use_", "%_\\", "a" * 600]
)
def test_odd_searches_answer_without_error(admin_client, ana, term):
    response = admin_client.get("/admin/profiles/profile/", {"q": term})
    assert response.status_code == 200 and listed(response) == []
