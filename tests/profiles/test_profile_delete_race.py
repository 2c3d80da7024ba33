"""`Event.profile` has no database constraint (docs/architecture.md, "the event log has no
foreign key"), so nothing in PostgreSQL stops an event from pointing at a deleted profile.
Deleting a profile (the admin allows it) must therefore wait for a resolution that is
assigning events to it, and then let go of those events too."""

from __future__ import annotations

import threading
import time

import psycopg
import pytest
from django.conf import settings
from django.db import connections

from profiles.models import Event, Profile

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def _other_connection() -> psycopg.Connection:
    d = settings.DATABASES["default"]
    return psycopg.connect(host=d["HOST"], port=d["PORT"] or 5432, user=d["USER"], password=d["PASSWORD"],
                           dbname=d["NAME"])  # fmt: skip


def test_deleting_a_profile_while_resolution_assigns_it_an_event_leaves_no_event_pointing_at_it(send):
    send({"type": "identify", "userId": "u1", "messageId": "m1"})
    send({"type": "track", "userId": "u1", "event": "Clicked", "messageId": "m2"})
    profile_id = Profile.objects.get().id
    late = Event.objects.get(message_id="m2")
    Event.objects.filter(id=late.id).update(profile_id=None)

    # A resolution in flight: it holds the lock resolution takes on the profile and has
    # assigned an event to it, not yet committed.
    resolver = _other_connection()
    resolver.execute("SELECT id FROM profiles_profile WHERE id = %s FOR NO KEY UPDATE", [profile_id])
    resolver.execute("UPDATE profiles_event SET profile_id = %s WHERE id = %s", [profile_id, late.id])

    def delete() -> None:
        try:
            Profile.objects.filter(id=profile_id).delete()  # as the admin's "delete selected"
        finally:
            connections.close_all()

    deleting = threading.Thread(target=delete)
    deleting.start()
    time.sleep(0.5)  # the delete is under way (or waiting on the resolver's lock)
    resolver.commit()
    resolver.close()
    deleting.join(10)

    assert not Profile.objects.filter(id=profile_id).exists()
    assert Event.objects.filter(profile_id=profile_id).count() == 0  # no event points at a deleted profile
