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


MARKETER = ("audiences.view_audience", "audiences.add_audience", "audiences.change_audience", "profiles.view_profile")
