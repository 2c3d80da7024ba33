"""Which messages a destination takes, and why not (pure: no ORM, no clock).

Segment's rules: the consent object is looked at first, the `integrations` object after it
(segment-spec §10, §11). A destination's name in `integrations`, or its kind's (`Webhooks`,
`Mailjet`, `Mailchimp`), overrides `All`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

# The names Segment's integrations object uses for each kind.
INTEGRATION_NAMES = {"webhook": ("Webhooks", "Webhook"), "mailjet": ("Mailjet",), "mailchimp": ("Mailchimp",)}
ALL = "all"


@dataclass(frozen=True, slots=True)
class Route:
    """What routing needs of a destination."""

    id: int
    name: str
    kind: str
    audiences: Sequence[str] | str  # keys, or "all"
    traits: Sequence[str] | str
    event_sources: frozenset[int]
    event_names: frozenset[str]  # empty: every name
    consent_categories: tuple[str, ...]

    def subscribes(self, kind: str, subject: str, *, source_id: int | None = None, event: str | None = None) -> bool:
        """Whether it asked for this: the audience, the trait, or (webhooks) the source's events."""
        if kind in ("audience", "sync"):
            return self.audiences == ALL or subject in self.audiences
        if kind == "trait":
            return self.traits == ALL or subject in self.traits
        if kind == "event":
            if self.kind != "webhook" or source_id not in self.event_sources:
                return False
            return not self.event_names or (event or "") in self.event_names
        return kind == "test"


def consent_refuses(message: Mapping[str, Any], categories: Sequence[str]) -> str | None:
    """The reason consent keeps the message from a destination mapped to `categories`, or
    None. A missing context or consent object flows everywhere; an empty
    `categoryPreferences` counts every category as refused; each mapped category must be true."""
    if not categories:
        return None
    context = message.get("context")
    consent = context.get("consent") if isinstance(context, Mapping) else None
    if not isinstance(consent, Mapping) or not consent:
        return None
    prefs = consent.get("categoryPreferences")
    prefs = prefs if isinstance(prefs, Mapping) else {}
    refused = [c for c in categories if prefs.get(c) is not True]
    return f"consent: {', '.join(refused)} not granted" if refused else None


def integrations_refuse(message: Mapping[str, Any], *, name: str, kind: str) -> str | None:
    """The reason the message's `integrations` object keeps it from this destination, or None."""
    integrations = message.get("integrations")
    if not isinstance(integrations, Mapping) or not integrations:
        return None
    for key in (name, *INTEGRATION_NAMES.get(kind, ())):
        if key in integrations:
            value = integrations[key]
            return None if value is not False else f"integrations: {key} is false"
    if integrations.get("All", True) is False:
        return "integrations: All is false"
    return None


# Messages a list destination can do nothing with: it takes identify calls (Segment's
# Mailjet and Mailchimp destinations do too).
def kind_refuses(message: Mapping[str, Any], *, kind: str) -> str | None:
    if kind == "webhook":
        return None
    if message.get("type") != "identify":
        return f"{kind} takes identify calls only"
    if not _email(message):
        return "no email: a contact list needs one"
    return None


def _email(message: Mapping[str, Any]) -> str | None:
    traits = message.get("traits")
    email = traits.get("email") if isinstance(traits, Mapping) else None
    return email if isinstance(email, str) and email else None


def filtered_reason(message: Mapping[str, Any], route: Route) -> str | None:
    """Why this message is filtered for this destination (consent first, then the
    integrations object, then what the kind can take), or None: it is to be sent."""
    return (
        consent_refuses(message, route.consent_categories)
        or integrations_refuse(message, name=route.name, kind=route.kind)
        or kind_refuses(message, kind=route.kind)
    )
