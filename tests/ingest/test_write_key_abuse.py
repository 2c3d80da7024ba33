"""What a public write key can make the CDP store is bounded at every moment: copies of refused
requests per minute (per source; per client address and in all without a valid key), and the
identity kinds that messages can create."""

from __future__ import annotations

from unittest import mock

import orjson
import pytest
from django.test import Client

from ingest.models import IngestCounter, IngestNotice, RejectedMessage
from ingest.refusals import NOT_STORED, UNKNOWN_SOURCE
from tests.conftest import basic_auth

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _one_minute(monkeypatch):
    """The caps count per minute of the clock: a flood must not straddle two minutes."""
    monkeypatch.setattr("ingest.refusals.time.time", lambda: 1_800_000_030.0)


def _notice(source_id: int, code: str) -> int:
    return sum(IngestNotice.objects.filter(source_id=source_id, code=code).values_list("count", flat=True))


def _track(client: Client, key: str, address: str = "203.0.113.7", body: dict | None = None):
    return client.post(
        "/v1/track", data=orjson.dumps(body or {"userId": "u1", "event": "Flooded"}), content_type="application/json",
        headers={"Authorization": basic_auth(key)}, REMOTE_ADDR=address,
    )  # fmt: skip


def test_a_flood_with_an_unknown_key_from_one_address_keeps_few_copies_and_counts_all(settings):
    client = Client()
    for _ in range(200):
        assert _track(client, "no-such-key").status_code == 401
    stored = RejectedMessage.objects.filter(source=None).count()
    assert stored == settings.CDP_REJECTED_PER_MINUTE_PER_ADDRESS
    assert _notice(UNKNOWN_SOURCE, "rejected") == 200
    assert _notice(UNKNOWN_SOURCE, NOT_STORED) == 200 - stored
    # Another address still gets its refusals kept: one noisy client cannot hide the others.
    _track(client, "typo-key", address="198.51.100.1")
    assert RejectedMessage.objects.filter(source=None).count() == stored + 1


def test_a_flood_from_many_addresses_is_capped_in_all(settings):
    client = Client()
    for i in range(300):
        _track(client, "no-such-key", address=f"2001:db8::{i:x}")
    assert RejectedMessage.objects.filter(source=None).count() == settings.CDP_REJECTED_PER_MINUTE_UNKNOWN
    assert _notice(UNKNOWN_SOURCE, "rejected") == 300


def test_invalid_messages_of_a_real_source_are_counted_and_copies_capped_per_minute(settings, source):
    client = Client()
    batch = {"batch": [{"type": "track", "userId": "u1"} for _ in range(2500)]}  # no event name
    answer = client.post("/v1/batch", data=orjson.dumps(batch), content_type="application/json",
                         headers={"Authorization": basic_auth(source.write_key)})  # fmt: skip
    assert answer.status_code == 200 and len(answer.json()["rejected"]) == 2500  # the sender is told of each
    cap = settings.CDP_REJECTED_PER_MINUTE_PER_SOURCE
    assert RejectedMessage.objects.filter(source=source).count() == cap
    assert sum(IngestCounter.objects.filter(source=source).values_list("rejected", flat=True)) == 2500
    assert _notice(source.pk, NOT_STORED) == 2500 - cap


def test_the_bound_holds_at_any_moment_not_only_after_the_trim(settings, source):
    """Minute after minute of flood, the copies grow by at most the cap a minute until the
    trim (every 10 minutes) cuts them back to the newest 1,000: never more than
    1,000 + 10 x cap rows, which is what the README promises."""
    client = Client()
    cap = settings.CDP_REJECTED_PER_MINUTE_PER_SOURCE
    start = 1_800_000_000.0
    for minute in range(3):
        with mock.patch("ingest.refusals.time.time", return_value=start + 60 * minute):
            for _ in range(cap + 25):
                _track(client, source.write_key, body={"type": "track", "userId": "u1"})
        assert RejectedMessage.objects.filter(source=source).count() == cap * (minute + 1)


def test_the_cap_fails_closed_when_the_cache_cannot_count(source, monkeypatch):
    def broken(*args, **kwargs):
        raise ConnectionError("cache down")

    monkeypatch.setattr("ingest.refusals.cache.incr", broken)
    _track(Client(), source.write_key, body={"type": "track", "userId": "u1"})
    assert not RejectedMessage.objects.exists()
    assert _notice(source.pk, NOT_STORED) == 1


def _external_ids(n: int, prefix: str = "crm") -> list[dict[str, str]]:
    return [{"type": f"{prefix}_{i:03d}", "id": f"v{i}", "collection": "users", "encoding": "none"} for i in range(n)]


def test_messages_create_at_most_the_cap_of_identity_kinds(post, source, admin_client):
    from profiles.models import Event, Identity, IdentityConfig, IdentityKind

    assert IdentityConfig.objects.get().max_auto_kinds == 50
    before = IdentityKind.objects.count()
    message = {"type": "identify", "userId": "u1", "context": {"externalIds": _external_ids(60)}}
    assert post("/v1/track", {**message, "type": "track", "event": "Synced"}, key=source.write_key).status_code == 200
    assert IdentityKind.objects.count() == before + 50
    assert IdentityKind.objects.filter(auto_created=True).count() == 50
    event = Event.objects.get()
    assert len(event.context["externalIds"]) == 60  # the event keeps what was sent
    kinds = set(Identity.objects.values_list("kind", flat=True))
    assert "crm_049" in kinds and "crm_050" not in kinds and "crm_059" not in kinds
    assert _notice(source.pk, "identity_kind_cap") == 10
    # Later messages with yet more kinds add none, and are counted too.
    post("/v1/track", {"userId": "u2", "event": "Synced", "context": {"externalIds": _external_ids(5, "erp")}},
         key=source.write_key)  # fmt: skip
    assert IdentityKind.objects.count() == before + 50 and _notice(source.pk, "identity_kind_cap") == 15
    # The operator sees why, in the debugger and in the identity settings.
    page = admin_client.get(f"/admin/ingest/source/{source.pk}/debugger/").content.decode()
    assert "identity kinds" in page and ">15<" in page
    settings_page = admin_client.get("/admin/profiles/identityconfig/1/change/").content.decode()
    assert "50 of 50" in settings_page
