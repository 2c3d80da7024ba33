"""Identity resolution on the real database, through the tracking API and the pipeline."""

from __future__ import annotations

import pytest

from ingest.pipeline import events_process
from profiles.models import Demotion, Event, Identity, IdentityKind, IdentityLink, Merge, Profile

pytestmark = pytest.mark.django_db


def identify(user_id=None, anonymous_id=None, t="2026-11-01T10:00:00Z", **traits):
    return {"type": "identify", "userId": user_id, "anonymousId": anonymous_id, "traits": traits, "timestamp": t}


def page(anonymous_id, t="2026-11-01T09:00:00Z", **kw):
    return {"type": "page", "anonymousId": anonymous_id, "timestamp": t, **kw}


def live_profiles():
    return Profile.objects.filter(merged_into__isnull=True)


def identities(profile):
    return {(i.kind, i.value) for i in Identity.objects.filter(profile=profile)}


def test_identify_creates_one_profile_with_its_identifiers_traits_and_provenance(send, source):
    send(identify("u1", "a1", email=" Ada@Example.com ", name="Ada") | {"messageId": "m-1"})
    profile = live_profiles().get()
    assert profile.key.startswith("use_") and len(profile.key) == 31
    assert identities(profile) == {("user_id", "u1"), ("anonymous_id", "a1"), ("email", "ada@example.com")}
    assert profile.traits == {"email": " Ada@Example.com ", "name": "Ada"}
    meta = profile.trait_meta["name"]
    assert (meta["source_id"], meta["message_id"], meta["at"]) == (source.pk, "m-1", "2026-11-01T10:00:00.000000Z")
    uid = Identity.objects.get(kind="user_id")
    assert (uid.first_message_id, uid.source_id) == ("m-1", source.pk)
    assert Event.objects.get().profile == profile
    assert IdentityLink.objects.count() == 3  # every pair of the three


def test_anonymous_visitor_then_sign_up_lands_on_one_profile(send):
    send(page("a1"), page("a1", t="2026-11-01T09:05:00Z"))
    send(identify("u1", "a1"))
    assert live_profiles().count() == 1
    assert Event.objects.filter(profile__isnull=True).count() == 0
    assert len({e.profile_id for e in Event.objects.all()}) == 1


def test_two_profiles_sharing_an_email_merge_into_the_oldest(send):
    send(identify(None, "phone", t="2026-11-01T10:00:00Z", email="a@x.io", plan="free"))
    send(page("laptop"))
    older, newer = Profile.objects.order_by("id")
    send(identify(None, "laptop", t="2026-11-02T10:00:00Z", email="A@x.io", plan="pro"))
    newer.refresh_from_db()
    assert newer.merged_into == older
    assert live_profiles().get() == older
    older.refresh_from_db()
    assert older.traits["plan"] == "pro" and older.merge_count == 1
    merge = Merge.objects.get()
    assert (merge.winner, merge.loser, merge.actor) == (older, newer, None)
    assert "email:a@x.io" in merge.identifiers and merge.event_id is not None
    assert set(Event.objects.values_list("profile_id", flat=True)) == {older.pk}
    assert identities(older) == {("anonymous_id", "phone"), ("anonymous_id", "laptop"), ("email", "a@x.io")}


def test_tombstones_re_point_when_their_winner_merges_again(send):
    send(page("a1"), page("a2"), page("a3"))
    p1 = Profile.objects.order_by("id").first()
    send(identify(None, "a2", email="x@x.io"), identify(None, "a3", email="x@x.io"))  # p3 -> p2
    send(identify(None, "a1", email="x@x.io"))  # p2 -> p1
    assert set(Profile.objects.exclude(pk=p1.pk).values_list("merged_into", flat=True)) == {p1.pk}


def test_segments_worked_example_on_the_database(send):
    send(identify("abc123", email="jane@example.com"))
    send(identify("abc456", email="jane@example.com"))
    assert live_profiles().count() == 2
    second = Identity.objects.get(value="abc456").profile
    assert identities(second) == {("user_id", "abc456")}
    demotion = Demotion.objects.get()
    assert (demotion.kind, demotion.value, demotion.rule) == ("email", "jane@example.com", "user_id limit 1 ever")
    assert demotion.profile == Identity.objects.get(value="abc123").profile


def test_blocked_user_id_resolves_by_the_anonymous_id(send):
    send(page("a1"))
    send(identify("null", "a1"), identify("undefined", "a1"))
    assert live_profiles().count() == 1
    assert not Identity.objects.filter(kind="user_id").exists()


def test_newest_trait_wins_late_events_never_roll_back_and_null_removes(send):
    send(identify("u1", t="2026-11-05T00:00:00Z", plan="pro", company="Acme"))
    send(identify("u1", t="2026-11-01T00:00:00Z", plan="free"))  # late: older
    profile = live_profiles().get()
    assert profile.traits["plan"] == "pro"
    send(identify("u1", t="2026-11-06T00:00:00Z", company=None))
    profile.refresh_from_db()
    assert "company" not in profile.traits
    send(identify("u1", t="2026-11-04T00:00:00Z", company="Old Co"))  # older than the removal
    profile.refresh_from_db()
    assert "company" not in profile.traits


def test_context_traits_on_track_set_traits_and_resolve_email(send):
    send({"type": "track", "anonymousId": "a9", "event": "Email Opened", "context": {"traits": {"email": "b@x.io"}}})
    profile = live_profiles().get()
    assert ("email", "b@x.io") in identities(profile) and profile.traits == {"email": "b@x.io"}


def test_first_and_last_seen_follow_event_times(send):
    send(page("a1", t="2026-11-03T00:00:00Z"), page("a1", t="2026-11-01T00:00:00Z"))
    profile = live_profiles().get()
    assert profile.first_seen_at.day == 1 and profile.last_seen_at.day == 3


def test_replaying_messages_changes_nothing(send):
    messages = (identify("u1", "a1", email="a@x.io") | {"messageId": "m1"}, identify("u2", "a1") | {"messageId": "m2"})
    send(*messages)

    def state() -> tuple:
        return (
            sorted(Profile.objects.values_list("id", "merged_into", "traits", "merge_count")),
            sorted(Identity.objects.values_list("kind", "value", "profile")),
            sorted(Event.objects.values_list("id", "profile")),
            Demotion.objects.count(),
        )

    before = state()
    send(*messages)  # a replayed request: the same messageIds, dropped by the pipeline
    assert events_process(batch_ids=[1, 2, 3]).processed == 0  # a redelivered task: its batch is gone
    assert state() == before
    # The same people again, in new messages: new events, on the same profiles, nothing else.
    send(*(m | {"messageId": f"again-{m['messageId']}"} for m in messages))
    profiles, identities, events, demotions = state()
    assert (profiles, identities) == before[:2] and demotions == before[3] * 2
    assert {p for _, p in events} == {p for _, p in before[2]} and len(events) == 4


def test_alias_links_the_anonymous_id_to_the_user(send):
    send(page("anon-7"), identify("u1"))
    send({"type": "alias", "userId": "u1", "previousId": "anon-7"})
    assert live_profiles().count() == 1


def test_alias_never_merges_when_turned_off(send):
    from profiles.models import IdentityConfig

    IdentityConfig.objects.filter(pk=1).update(alias_merges=False)
    send(page("anon-7"), identify("u1"))
    send({"type": "alias", "userId": "u1", "previousId": "anon-7"})
    assert live_profiles().count() == 2


def test_unseen_external_id_types_are_added_to_the_settings(send):
    send(
        {
            "type": "track",
            "userId": "u1",
            "event": "x",
            "context": {"externalIds": [{"id": "C-1", "type": "crm_id", "collection": "users", "encoding": "none"}]},
        }
    )
    kind = IdentityKind.objects.get(kind="crm_id")
    assert (kind.priority, kind.limit) == (None, 5) and "null" in kind.blocked_values
    assert Identity.objects.filter(kind="crm_id", value="C-1").exists()


def test_custom_kinds_are_read_where_the_settings_say(send):
    IdentityKind.objects.create(kind="shopify_id", read_from="traits", key="shopify_id", limit=1)
    send(identify("u1", shopifyId="S-9"))
    assert Identity.objects.filter(kind="shopify_id", value="S-9").exists()


def test_settings_changed_in_the_database_apply_to_new_data(send):
    IdentityKind.objects.filter(kind="anonymous_id").update(limit=1, window="ever")
    send(identify("u1", "a1"))
    send(identify("u1", "a2"))
    assert identities(live_profiles().get()) == {("user_id", "u1"), ("anonymous_id", "a1")}
    assert Demotion.objects.get().rule == "anonymous_id limit 1 ever"


def test_events_with_only_blocked_identifiers_are_processed_without_a_profile(send):
    send(page("undefined"))
    event = Event.objects.get()
    assert event.profile is None and event.processed_at is not None
