"""Staff operations on the graph: split, remove, merge by hand, rebuild, explain; through
the services, the admin and the command."""

from __future__ import annotations

from io import StringIO

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command

from profiles.models import Demotion, Event, Identity, IdentityAudit, Merge, Profile
from profiles.selectors import profile_explain
from profiles.services.identity_ops import (
    IdentityOperationError,
    identities_rebuild,
    identity_remove,
    profile_merge,
    profile_split,
)
from tests.profiles.test_resolution import identify, page

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff(db):
    return User.objects.create_superuser("staff", "staff@x.io", "pw")


def live():
    return Profile.objects.filter(merged_into__isnull=True, identities__isnull=False).distinct()


def owner(kind, value):
    return Identity.objects.get(kind=kind, value=value).profile


def partition():
    """Which identifiers and which events live together: what a user would call 'the people'."""
    people = set()
    for p in live():
        ids = frozenset(Identity.objects.filter(profile=p).values_list("kind", "value"))
        events = frozenset(Event.objects.filter(profile=p).values_list("message_id", flat=True))
        people.add((ids, events))
    return people


@pytest.fixture
def wrong_merge(send):
    """Ana signs in on the family laptop; her email later arrives from that laptop with
    Bo's anonymous id through a bad integration, merging Bo's browsing into Ana."""
    send(page("laptop", t="2026-11-01T09:00:00Z") | {"messageId": "p1"},
         identify("ana", "laptop", t="2026-11-01T10:00:00Z", email="ana@x.io") | {"messageId": "i1"},
         page("bo-phone", t="2026-11-02T09:00:00Z") | {"messageId": "p2"},
         page("bo-phone", t="2026-11-02T09:01:00Z") | {"messageId": "p3"})  # fmt: skip
    send(identify(None, "bo-phone", t="2026-11-03T10:00:00Z", email="ana@x.io", name="Ana") | {"messageId": "i2"})
    assert live().count() == 1
    return owner("user_id", "ana")


def test_split_moves_identifiers_events_and_traits_and_is_audited(wrong_merge, staff, send):
    result = profile_split(profile_id=wrong_merge.pk, identifiers=[("anonymous_id", "bo-phone")], actor=staff,
                           reason="bad CRM sync")  # fmt: skip
    assert result.profile_ids[0] == wrong_merge.pk and len(result.profile_ids) == 2
    bo = owner("anonymous_id", "bo-phone")
    assert bo.pk == result.profile_ids[1] and owner("user_id", "ana") == wrong_merge
    assert set(Event.objects.filter(profile=bo).values_list("message_id", flat=True)) == {"p2", "p3"}
    assert set(Event.objects.filter(profile=wrong_merge).values_list("message_id", flat=True)) == {"p1", "i1", "i2"}
    assert bo.traits == {} and result.events_moved == 2
    audit = IdentityAudit.objects.get(action="split")
    assert (audit.actor, audit.reason, audit.profile) == (staff, "bad CRM sync", wrong_merge)
    assert audit.details["identifiers"] == ["anonymous_id:bo-phone"]

    # The split holds: a later message carrying both sides is refused the merge.
    send(identify("ana", "bo-phone", t="2026-11-05T10:00:00Z"))
    assert owner("anonymous_id", "bo-phone") == bo
    assert Demotion.objects.filter(rule=f"kept apart by split {audit.id}").exists()


def test_split_that_cuts_a_bridge_leaves_each_side_whole(send, staff):
    send(identify(None, "a1", email="x@x.io"), identify(None, "a2", email="x@x.io"))
    profile = owner("email", "x@x.io")
    result = profile_split(profile_id=profile.pk, identifiers=[("email", "x@x.io")], actor=staff, reason="shared")
    assert len(result.profile_ids) == 3  # a1 alone, a2 alone, the email alone
    assert len({owner("anonymous_id", "a1"), owner("anonymous_id", "a2"), owner("email", "x@x.io")}) == 3


@pytest.mark.parametrize(
    ("identifiers", "reason", "message"),
    [
        ([], "why", "at least one"),
        ([("email", "nobody@x.io")], "why", "Not on this profile"),
        ([("user_id", "ana"), ("anonymous_id", "laptop"), ("email", "ana@x.io"), ("anonymous_id", "bo-phone")],
         "why", "Nothing would remain"),
        ([("anonymous_id", "bo-phone")], " ", "reason is required"),
    ],
)  # fmt: skip
def test_bad_splits_are_refused_and_change_nothing(wrong_merge, staff, identifiers, reason, message):
    before = partition()
    with pytest.raises(IdentityOperationError, match=message):
        profile_split(profile_id=wrong_merge.pk, identifiers=identifiers, actor=staff, reason=reason)
    assert partition() == before and not IdentityAudit.objects.exists()


def test_remove_an_identifier(wrong_merge, staff):
    identity_remove(profile_id=wrong_merge.pk, kind="anonymous_id", value="bo-phone", actor=staff, reason="typo")
    assert not Identity.objects.filter(value="bo-phone").exists()
    assert IdentityAudit.objects.get().details == {"identifier": "anonymous_id:bo-phone"}
    with pytest.raises(IdentityOperationError, match="last user_id"):
        identity_remove(profile_id=wrong_merge.pk, kind="user_id", value="ana", actor=staff, reason="x")


def test_remove_refuses_the_only_identifier(send, staff):
    send(page("solo"))
    with pytest.raises(IdentityOperationError, match="only identifier"):
        identity_remove(profile_id=owner("anonymous_id", "solo").pk, kind="anonymous_id", value="solo", actor=staff,
                        reason="x")  # fmt: skip


def test_manual_merge_refused_over_a_limit_unless_overridden(send, staff):
    send(identify("u1"), identify("u2"), page("a9"))
    u1, u2, a9 = owner("user_id", "u1"), owner("user_id", "u2"), owner("anonymous_id", "a9")
    with pytest.raises(IdentityOperationError, match="user_id limit 1 ever"):
        profile_merge(profile_ids=[u1.pk, u2.pk], actor=staff, reason="same person")
    winner = profile_merge(profile_ids=[u2.pk, a9.pk], actor=staff, reason="support ticket 42")
    assert winner == min(u2, a9, key=lambda p: p.pk)  # the oldest wins, as in resolution
    assert owner("anonymous_id", "a9") == winner == owner("user_id", "u2")
    merge = Merge.objects.get()
    assert (merge.actor, merge.reason) == (staff, "support ticket 42")
    forced = profile_merge(profile_ids=[u1.pk, winner.pk], actor=staff, reason="same person", override=True)
    assert forced == min(u1, winner, key=lambda p: p.pk) and live().count() == 1
    assert IdentityAudit.objects.filter(action="manual_merge", details__override=True).count() == 1


def test_rebuild_equals_the_incremental_result(send):
    send(page("a1", t="2026-11-01T09:00:00Z"), identify("u1", "a1", t="2026-11-01T10:00:00Z", email="p@x.io"),
         identify("u2", "a1", t="2026-11-01T11:00:00Z"), page("a2", t="2026-11-01T12:00:00Z"))  # fmt: skip
    send(identify(None, "a2", t="2026-11-01T13:00:00Z", email="p@x.io", name="P"),
         identify("null", "a3", t="2026-11-01T14:00:00Z"))  # fmt: skip
    before = partition()
    old_ids = list(live().values_list("id", flat=True))
    traits_before = {frozenset(Identity.objects.filter(profile=p).values_list("value", flat=True)): p.traits
                     for p in live()}  # fmt: skip
    result = identities_rebuild(reason="test")
    assert partition() == before
    assert result.events == Event.objects.count() and result.profiles == len(before)
    for p in live():
        assert traits_before[frozenset(Identity.objects.filter(profile=p).values_list("value", flat=True))] == p.traits
    for old in old_ids:  # every old id still resolves, to a live profile
        explained = profile_explain(profile_id=old)
        assert explained.profile.merged_into_id is None and explained.requested.pk == old
    assert IdentityAudit.objects.get(action="rebuild").details["events"] == result.events


def test_split_then_rebuild_round_trip(wrong_merge, staff):
    profile_split(profile_id=wrong_merge.pk, identifiers=[("anonymous_id", "bo-phone")], actor=staff, reason="x")
    after_split = partition()
    identities_rebuild(reason="test")
    assert partition() == after_split


def test_explain_gives_provenance_merges_demotions_and_splits(wrong_merge, staff, send):
    send(identify("zed", email="ana@x.io", t="2026-11-04T00:00:00Z") | {"messageId": "i3"})  # demoted email
    x = profile_explain(profile_id=wrong_merge.pk)
    brought = {(i.kind, i.value): i.first_message_id for i in x.identities}
    assert brought == {("anonymous_id", "laptop"): "p1", ("user_id", "ana"): "i1", ("email", "ana@x.io"): "i1",
                       ("anonymous_id", "bo-phone"): "p2"}  # fmt: skip
    assert [(m.message_id, m.identifiers) for m in x.merges] == [("i2", ["email:ana@x.io", "anonymous_id:bo-phone"])]
    assert [(d.message_id, d.kind, d.rule) for d in x.demotions] == [("i3", "email", "user_id limit 1 ever")]
    loser = x.merges[0].loser
    assert profile_explain(profile_id=loser.pk).profile == wrong_merge  # through the tombstone


def test_rebuild_command_prints_a_summary(send):
    send(identify("u1", "a1"))
    out = StringIO()
    call_command("rebuild_identities", "--no-progress", stdout=out)
    assert "Resolution is blocked until this finishes" in out.getvalue()
    assert "Rebuilt 1 events into 1 profiles with 2 identifiers" in out.getvalue()


@pytest.mark.postgres
def test_rebuild_gives_up_after_its_lock_timeout_and_changes_nothing(send):
    """Another transaction writing the identity tables (a resolution, a staff split) holds
    them: the rebuild waits --lock-timeout, then says so and leaves the graph alone."""
    import time

    import psycopg
    from django.core.management.base import CommandError
    from django.db import connection

    send(identify("u1", "a1"))
    before = partition()
    params = connection.get_connection_params()
    with psycopg.connect(**{k: v for k, v in params.items() if k != "cursor_factory"}) as other:
        other.execute("LOCK TABLE profiles_identity IN ROW EXCLUSIVE MODE")  # as a writer holds it
        start = time.monotonic()
        with pytest.raises(CommandError, match=r"locked for 0.5 s.*--lock-timeout"):
            call_command("rebuild_identities", "--no-progress", "--lock-timeout", "0.5", stdout=StringIO())
        waited = time.monotonic() - start
    assert 0.5 <= waited < 5
    assert partition() == before and not IdentityAudit.objects.filter(action="rebuild").exists()


def test_admin_identity_page_split_and_merge(wrong_merge, admin_client, send):
    page_ = admin_client.get(f"/admin/profiles/profile/{wrong_merge.pk}/identity/")
    html = page_.content.decode()
    assert page_.status_code == 200 and "bo-phone" in html and "email:ana@x.io" in html
    form = {"identifier": ["anonymous_id:bo-phone"], "reason": "bad sync", "split": "1"}
    response = admin_client.post(f"/admin/profiles/profile/{wrong_merge.pk}/identity/", form)
    assert response.status_code == 302
    bo = owner("anonymous_id", "bo-phone")
    assert bo != wrong_merge
    form = {"action": "merge_selected", "_selected_action": [wrong_merge.pk, bo.pk], "reason": "it was right",
            "override": "on", "apply": "1"}  # fmt: skip
    response = admin_client.post("/admin/profiles/profile/", form)
    assert response.status_code == 302
    assert owner("anonymous_id", "bo-phone") == wrong_merge
    assert IdentityAudit.objects.filter(action="manual_merge").exists()
