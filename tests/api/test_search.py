"""profile_search: the one search behind the REST API and the admin profile list."""

from __future__ import annotations

import pytest
from django.db import connection

from profiles.models import Identity, Profile
from profiles.selectors import _trait_values_text, profile_search

pytestmark = pytest.mark.django_db


def identify(user_id, anonymous_id=None, t="2026-11-01T10:00:00Z", **traits):
    return {"type": "identify", "userId": user_id, "anonymousId": anonymous_id, "traits": traits, "timestamp": t}


def keys(query):
    return sorted(profile_search(query=query).values_list("key", flat=True))


def test_search_by_identifier_email_fragment_and_trait_value(send):
    send(
        identify("u1", "phone-1", email="Ada.Lovelace@Example.com", name="Ada", plan="pro", city="London"),
        identify("u2", "laptop-2", email="grace@navy.mil", name="Grace", plan="free", city="Arlington"),
        identify("u3", None, name="Alan", plan="pro", city="Manchester"),
    )
    ada, grace, alan = (
        Profile.objects.get(identities__kind="user_id", identities__value=u).key for u in ("u1", "u2", "u3")
    )
    assert keys("user_id:u1") == [ada]
    assert keys("anonymous_id:laptop-2") == [grace]
    assert keys("email:ADA.lovelace@example.com") == [ada]  # normalised like resolution stores it
    assert keys("u3") == [alan]  # any identifier, exactly
    assert keys("phone-1") == [ada]
    assert keys("lovelace@exa") == [ada]  # an email fragment, any case
    assert keys("navy") == [grace]
    assert keys("manchester") == [alan]  # a trait value, any case
    assert keys("plan:pro") == sorted([ada, alan])  # a trait key equal to a value
    assert keys("city:London") == [ada]
    assert keys(ada) == [ada]  # the use_ id
    assert keys("user_id:nobody") == []
    assert keys("zz") == []  # too short for a fragment, and no such identifier
    assert keys("plan") == []  # a trait key is not a trait value
    assert len(keys("")) == 3
    assert keys("100%") == []  # LIKE wildcards are literal


def test_search_finds_the_winner_through_a_merged_away_identifier(send):
    send(identify(None, "a1", email="x@example.com"))
    send(identify("u2", "a2"))
    send(identify("u2", "a2", t="2026-11-02T10:00:00Z", email="x@example.com"))  # u2's profile merges into a1's
    winner = Profile.objects.get(merged_into__isnull=True)
    loser = Profile.objects.exclude(id=winner.id).get()
    assert keys("user_id:u2") == [winner.key]
    assert keys(loser.key) == [winner.key]
    assert keys("a2") == [winner.key]
    assert keys("u2") == [winner.key]
    assert loser.key not in keys("")


@pytest.mark.postgres
def test_fragment_search_uses_the_trigram_indexes():
    """PostgreSQL can answer a fragment from the two GIN indexes (the expression in the query
    is the indexed one). On 1M profiles the planner picks them; bench/lookup.py times it."""
    from django.utils import timezone

    now = timezone.now()
    profiles = Profile.objects.bulk_create(
        Profile(traits={"name": f"Person {i}", "city": f"City {i % 97}"}, last_seen_at=now) for i in range(3000)
    )
    Identity.objects.bulk_create(
        Identity(kind="email", value=f"p{p.id}@host{p.id % 31}.example", profile=p, first_seen_at=now, last_seen_at=now)
        for p in profiles
    )
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE profiles_profile")
        cursor.execute("ANALYZE profiles_identity")
    target = profiles[1234]
    assert keys(f"p{target.id}@host") == [target.key]
    assert keys("Person 1234") == [target.key]
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")  # a table this small would be scanned
    plan = Profile.objects.alias(tv=_trait_values_text()).filter(tv__contains="PERSON 1234").explain()
    assert "profile_trait_values_trgm" in plan
    with connection.cursor() as cursor:  # a plain column under a partial index: no expression to match
        cursor.execute("SELECT indexdef FROM pg_indexes WHERE indexname = 'identity_email_trgm'")
        assert "gin (value gin_trgm_ops) WHERE ((kind)::text = 'email'::text)" in cursor.fetchone()[0]


def test_an_exact_identifier_finds_that_person_not_look_alikes(send):
    send(
        identify("u1", None, email="ada@example.com"),
        identify("u2", None, email="old-ada@example.com", note="forwarded from ada@example.com"),
    )
    ada, other = (Profile.objects.get(identities__kind="user_id", identities__value=u).key for u in ("u1", "u2"))
    assert keys("ada@example.com") == [ada]
    assert keys("ada@example") == sorted([ada, other])  # a fragment still finds both
