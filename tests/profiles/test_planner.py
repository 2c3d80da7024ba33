"""The identity planner, pure: Segment's worked example and the protection rules as tables,
then hypothesis properties against networkx. No database."""

from __future__ import annotations

from datetime import timedelta

import pytest

from profiles.identity.extract import extract_identifiers
from profiles.identity.planner import GraphView, Message, ProfileView, plan
from profiles.identity.rules import CustomKind, Window, build_rules, default_rules
from tests.profiles.identity_harness import T0, Store, msg

RULES = default_rules()
U, E, A = "user_id", "email", "anonymous_id"


def view(*profiles: tuple[int, list[tuple[str, str]]], merges: dict[int, int] | None = None) -> GraphView:
    return GraphView({
        pid: ProfileView(pid, (merges or {}).get(pid, 0), tuple((k, T0) for k in keys)) for pid, keys in profiles
    })  # fmt: skip


def test_segments_worked_example_demotes_the_email_and_creates_a_profile():
    """Profile {user_id abc123, email jane@}; a message {user_id abc456, email jane@}."""
    existing = view((1, [(U, "abc123"), (E, "jane@example.com")]))
    result = plan([msg(10, (U, "abc456"), (E, "jane@example.com"))], existing, RULES)
    assert result.new_profiles == (-1,)
    assert result.assignments == {10: -1}
    assert [(n.key, n.profile) for n in result.new_identities] == [((U, "abc456"), -1)]
    demotions = [(d.key, d.rule, d.profile) for d in result.demotions]
    assert demotions == [((E, "jane@example.com"), "user_id limit 1 ever", 1)]
    assert result.merges == () and result.links == ()


def test_no_match_creates_attach_adds_several_merge_into_the_oldest():
    s = Store()
    s.run([msg(1, (A, "a1"))], RULES)  # profile 1
    s.run([msg(2, (E, "e@x.io"))], RULES)  # profile 2
    attach = s.run([msg(3, (U, "u1"), (A, "a1"))], RULES)
    assert attach.assignments == {3: 1} and attach.merges == ()
    merge = s.run([msg(4, (U, "u1"), (E, "e@x.io"))], RULES)
    assert [(m.winner, m.loser, m.event_id) for m in merge.merges] == [(1, 2, 4)]
    assert s.events == {1: 1, 2: 1, 3: 1, 4: 1}
    assert s.profiles() == {frozenset({(A, "a1"), (U, "u1"), (E, "e@x.io")})}


def test_within_one_batch_new_profiles_merge_into_the_first_created():
    result = plan([msg(1, (A, "a1")), msg(2, (A, "a2")), msg(3, (A, "a1"), (A, "a2"))], GraphView.empty(), RULES)
    assert result.new_profiles == (-1,)
    assert set(result.assignments.values()) == {-1}
    assert result.merges == ()  # the loser was never stored: nothing to record


def test_shared_device_keeps_two_people_apart():
    """Two users log in on one browser: the anonymous id is demoted for the second."""
    s = Store()
    s.run([msg(1, (U, "alice"), (A, "family-ipad")), msg(2, (U, "bob"), (A, "family-ipad"))], RULES)
    assert s.profiles() == {frozenset({(U, "alice"), (A, "family-ipad")}), frozenset({(U, "bob")})}
    assert s.demotions == {(2, (A, "family-ipad"))}
    s.run([msg(3, (A, "family-ipad"))], RULES)
    assert s.events[3] == s.events[1]


@pytest.mark.parametrize(
    ("identifiers", "kept"),
    [
        ({"user_id": "null", "anonymous_id": "a1"}, [(A, "a1")]),
        ({"user_id": "undefined", "anonymous_id": "a1"}, [(A, "a1")]),
        ({"user_id": "Anonymous", "anonymous_id": "a1"}, [(A, "a1")]),
        ({"user_id": "0", "anonymous_id": "a1"}, [(A, "a1")]),
        ({"user_id": "-1", "anonymous_id": "a1"}, [(A, "a1")]),
        ({"user_id": "00000000-0000-0000-0000-000000000000", "anonymous_id": "a1"}, [(A, "a1")]),
        ({"user_id": "u-100", "anonymous_id": "NULL"}, [(U, "u-100")]),
        ({"user_id": "null", "anonymous_id": None}, []),
    ],
)
def test_blocked_values_are_not_identifiers(identifiers, kept):
    found = extract_identifiers(traits={}, context={}, properties={}, integrations={}, rules=RULES, **identifiers)
    assert found == kept


def test_events_with_only_blocked_values_stay_unresolved():
    result = plan([msg(1)], GraphView.empty(), RULES)
    assert result.unresolved == (1,) and result.assignments == {}


def test_email_is_trimmed_lowercased_and_read_from_three_places():
    found = extract_identifiers(
        user_id=None, anonymous_id="a1", traits={"email": " Jane@Example.COM "},
        context={"traits": {"email": "jane@example.com"}}, properties={"email": "other@example.com"},
        integrations={}, rules=RULES,
    )  # fmt: skip
    assert found == [(E, "jane@example.com"), (E, "other@example.com"), (A, "a1")]


def test_device_ids_external_ids_ga_and_custom_kinds():
    rules = default_rules(custom=(CustomKind("shopify_id", "traits", "shopify_id"),))
    found = extract_identifiers(
        user_id="u1", anonymous_id=None, properties={}, traits={"shopifyId": 77},
        context={
            "device": {"type": "ios", "id": "dev-1", "advertisingId": "ad-1", "adTrackingEnabled": True, "token": "t1"},
            "externalIds": [{"id": "C-9", "type": "Salesforce_ID", "collection": "users", "encoding": "none"},
                            {"id": "acct", "type": "account_id", "collection": "accounts", "encoding": "none"}],
        },
        integrations={"Google Analytics": {"clientId": "123.456"}}, rules=rules,
    )  # fmt: skip
    assert set(found) == {(U, "u1"), ("ios.id", "dev-1"), ("ios.idfa", "ad-1"), ("ios.push_token", "t1"),
                          ("salesforce_id", "C-9"), ("ga_client_id", "123.456"), ("shopify_id", "77")}  # fmt: skip
    assert found[0] == (U, "u1")


def test_advertising_id_only_when_ad_tracking_is_enabled():
    context = {"device": {"type": "android", "id": "d", "advertisingId": "ad", "adTrackingEnabled": False}}
    found = extract_identifiers(user_id=None, anonymous_id=None, traits={}, properties={}, integrations={},
                                context=context, rules=RULES)  # fmt: skip
    assert found == [("android.id", "d")]


def test_merge_cap_demotes():
    existing = view((1, [(U, "u1")]), (2, [(A, "a2")]), merges={1: 100})
    result = plan([msg(5, (U, "u1"), (A, "a2"))], existing, RULES)
    assert result.merges == ()
    assert [(d.key, d.rule) for d in result.demotions] == [((A, "a2"), "merges cap 100")]
    assert result.assignments == {5: 1}


def test_identifier_cap_demotes_but_events_keep_resolving():
    rules = default_rules(max_identities=3)
    existing = view((1, [(U, "u1"), (E, "a@x.io"), (E, "b@x.io")]))
    result = plan([msg(5, (U, "u1"), (E, "c@x.io"))], existing, rules)
    assert result.assignments == {5: 1} and result.new_identities == ()
    assert [d.rule for d in result.demotions] == ["identifiers cap 3"]


@pytest.mark.parametrize(
    ("window", "age_days", "demoted"),
    [(Window.WEEKLY, 3, True), (Window.WEEKLY, 8, False), (Window.MONTHLY, 20, True),
     (Window.MONTHLY, 31, False), (Window.ANNUALLY, 300, True), (Window.ANNUALLY, 366, False),
     (Window.EVER, 5000, True)],
)  # fmt: skip
def test_limits_count_within_their_window(window, age_days, demoted):
    rules = build_rules([(U, 1, 1, Window.EVER, ()), (A, None, 2, window, ())])
    added = T0 - timedelta(days=age_days)
    existing = GraphView({1: ProfileView(1, 0, (((U, "u1"), added), ((A, "a1"), added), ((A, "a2"), added)))})
    result = plan([Message(9, T0, 1, "m", ((U, "u1"), (A, "a3")))], existing, rules)
    assert bool(result.demotions) is demoted
    assert bool(result.new_identities) is not demoted


def test_tightened_settings_do_not_freeze_a_profile_already_over():
    rules = build_rules([(U, 1, 1, Window.EVER, ())])
    existing = view((1, [(U, "u1"), (U, "u2")]))  # over the limit from before
    result = plan([msg(3, (U, "u1"))], existing, rules)
    assert result.assignments == {3: 1} and result.demotions == ()


def test_alias_merges_previous_anonymous_id_into_the_user():
    s = Store()
    s.run([msg(1, (A, "anon-7")), msg(2, (U, "u1"))], RULES)
    s.run([msg(3, (U, "u1"), previous_id="anon-7")], RULES)
    assert s.profiles() == {frozenset({(A, "anon-7"), (U, "u1")})}


def test_alias_between_two_user_ids_is_protected_and_keeps_the_new_user_id():
    s = Store()
    s.run([msg(1, (U, "old")), msg(2, (U, "new"))], RULES)
    result = s.run([msg(3, (U, "new"), previous_id="old")], RULES)
    assert [(d.key, d.rule) for d in result.demotions] == [((U, "old"), "user_id limit 1 ever")]
    assert s.events[3] == s.events[2]


def test_alias_never_merges_when_set_like_segment_unify():
    s = Store()
    rules = default_rules(alias_merges=False)
    s.run([msg(1, (A, "anon-7")), msg(2, (U, "u1"))], rules)
    s.run([msg(3, (U, "u1"), previous_id="anon-7")], rules)
    assert len(s.profiles()) == 2


def test_processing_the_same_messages_again_changes_nothing():
    s = Store()
    batch = [msg(1, (U, "u1"), (A, "a1")), msg(2, (U, "u2"), (A, "a1")), msg(3, (E, "e@x.io"), (A, "a1"))]
    s.run(batch, RULES)
    before = (s.profiles(), dict(s.events), dict(s.merge_count))
    again = s.run(batch, RULES)
    assert (s.profiles(), dict(s.events), dict(s.merge_count)) == before
    assert again.new_profiles == () and again.new_identities == () and again.merges == ()
