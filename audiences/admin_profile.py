"""The audiences section of the admin profile page (`profiles.page_sections`): the audiences a
person is in and was in, with entry and exit times and why. Registered by `AudiencesConfig`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.http import HttpRequest

from audiences.selectors import PROFILE_STAYS, profile_stays


def profile_audiences_section(request: HttpRequest, profile_id: int) -> Mapping[str, Any] | None:
    stays = profile_stays(profile_id=profile_id)
    return {
        "current": [s for s in stays if s.exited_at is None],
        "past": [s for s in stays if s.exited_at is not None],
        "capped": len(stays) >= PROFILE_STAYS,
        "can_view": any(request.user.has_perm(f"audiences.{p}_audience") for p in ("view", "change")),
    }
