"""Deleting a person: the profile, its identifiers and history, and the tombstones of the
profiles merged into it. The events stay in the log, without a profile."""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.db.models import Q

from audit.services import audit_record
from profiles.models import Profile
from profiles.services.feed import Changes, feed_write


def profile_delete(*, profile_id: int, actor: Any, reason: str) -> bool:
    """Delete a live profile (with the tombstones merged into it), audited, and tell the
    floors above through the feed (`deleted`). Returns False when it is already gone.
    Raises ValueError without a reason."""
    if not reason.strip():
        raise ValueError("Say why: a reason is required and kept in the audit log.")
    with transaction.atomic():
        profile = Profile.objects.select_for_update().filter(pk=profile_id).first()
        if profile is None:
            return False
        tombstones = list(Profile.objects.filter(merged_into_id=profile_id).values_list("pk", flat=True))
        changes = Changes("delete")
        for pk in [profile_id, *tombstones]:
            changes.of(pk).deleted = True
        audit_record(actor=actor, action="delete", target=profile, reason=reason,
                     changes={"tombstones_deleted": [None, len(tombstones)]})  # fmt: skip
        Profile.objects.filter(Q(merged_into_id=profile_id)).delete()
        profile.delete()
        feed_write(changes.values())
    return True
