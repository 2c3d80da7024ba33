from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from audiences.models import AudienceMember
from audiences.services import audience_create
from profiles.models import Identity

NOW = timezone.now()


def ago(days: float) -> str:
    return (NOW - timedelta(days=days)).isoformat().replace("+00:00", "Z")


def track(who, event, days, **properties):
    return {"type": "track", "userId": who, "event": event, "timestamp": ago(days), "properties": properties}


def page(who, days, **properties):
    return {"type": "page", "userId": who, "name": "Home", "timestamp": ago(days), "properties": properties}


def members(key):
    """The user_ids (else the anonymous ids) of an audience's members."""
    out = set()
    for pid in AudienceMember.objects.filter(audience__key=key).values_list("profile_id", flat=True):
        ids = dict(Identity.objects.filter(profile_id=pid).values_list("kind", "value"))
        out.add(ids.get("user_id") or ids.get("email") or ids.get("anonymous_id"))
    return out


@pytest.fixture
def define(django_capture_on_commit_callbacks):
    """Define an audience; its computation over all history (a task, inline here) runs at
    the commit."""

    def _define(**data):
        with django_capture_on_commit_callbacks(execute=True):
            audience = audience_create(data=data)
        audience.refresh_from_db()
        assert audience.status == "live", audience.last_error
        return audience

    return _define


@pytest.fixture
def staff(db):
    """`staff("audiences.view_audience", ...)`: a Django test client logged in as a staff
    member (not a superuser) holding exactly these permissions; `.user` is the user."""
    from django.contrib.auth.models import Permission, User
    from django.test import Client

    made = 0

    def _staff(*perms: str) -> Client:
        nonlocal made
        made += 1
        user = User.objects.create_user(f"staff{made}", password="a-long-password", is_staff=True)
        for perm in perms:
            app, codename = perm.split(".")
            user.user_permissions.add(Permission.objects.get(content_type__app_label=app, codename=codename))
        client = Client()
        client.force_login(user)
        client.user = user
        return client

    return _staff


MARKETER = ("audiences.view_audience", "audiences.add_audience", "audiences.change_audience", "profiles.view_profile")
