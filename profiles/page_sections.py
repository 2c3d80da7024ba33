"""Sections that the floors above add to the admin profile page. Profiles (floor 2) cannot
import audiences (3) and above, so each registers its section at startup (its `AppConfig.ready`),
like `profiles.memberships`: a template, and a function giving that template's context for a
profile (None: not shown to this user). The page includes them in registration order."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from django.http import HttpRequest

SectionContext = Callable[[HttpRequest, int], Mapping[str, Any] | None]


@dataclass(frozen=True, slots=True)
class PageSection:
    key: str  # the section's HTML id
    template: str
    context: SectionContext


_sections: dict[str, PageSection] = {}


def profile_section_register(section: PageSection) -> None:
    """Add (or replace, by key) a section of the profile page."""
    _sections[section.key] = section


@dataclass(frozen=True, slots=True)
class ShownSection:
    key: str
    template: str
    context: Mapping[str, Any]


def profile_sections(request: HttpRequest, profile_id: int) -> list[ShownSection]:
    """The registered sections this user sees for this profile, with their contexts."""
    out = []
    for s in _sections.values():
        context = s.context(request, profile_id)
        if context is not None:
            out.append(ShownSection(s.key, s.template, context))
    return out
