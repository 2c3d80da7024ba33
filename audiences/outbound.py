"""Audiences to destinations, as Segment's Engage sends them (segment-spec §8): on entry and
exit an `identify` with `traits: {<key>: true|false}` and a `track` `Audience Entered` /
`Audience Exited` with `properties: {audience_key, <key>}`, both carrying
`context.personas`; the email in `traits.email` and `context.traits.email`, one pair per email.

Written in the transaction that changes the membership (`services._apply`), a full sync's
pages for a destination that starts taking an audience (`AudienceMembers`, registered with
destinations at startup), and a re-sync of the memberships of a person who gains an email."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from django.urls import reverse
from django.utils import timezone

from audiences.hooks import DestinationLink
from audiences.models import Audience, AudienceMember
from destinations.fullsync import MembersPage
from destinations.outbox import Outgoing, deliveries_enqueue, routes, subscribed
from destinations.selectors import subject_destinations
from profiles.outbound import Recipient, identify_of, message_id, personas, recipients
from profiles.services.feed import FeedRow


def messages_for(
    *, audience_id: int, key: str, r: Recipient, entered: bool, at: datetime, kind: str = "audience",
    emails: Sequence[str] | None = None, id_prefix: str = "",
) -> list[Outgoing]:  # fmt: skip
    """The identify and the track of one entry or exit, for each email (or one pair without)."""
    out = []
    event = "Audience Entered" if entered else "Audience Exited"
    for email in (emails if emails is not None else r.emails) or (None,):
        ctx = r.context(email, personas("audience", key, f"aud_{audience_id}"))
        parts = (kind, audience_id, r.profile_id, entered, at.isoformat(), email)
        identify = identify_of(r, {key: entered}, email, context=ctx, at=at,
                               mid=id_prefix + message_id(*parts, "identify"))  # fmt: skip
        track: dict[str, Any] = {
            "type": "track", "event": event, "messageId": id_prefix + message_id(*parts, "track"),
            "properties": {"audience_key": key, key: entered}, "context": ctx, "timestamp": at.isoformat(),
        }  # fmt: skip
        for field in ("userId", "anonymousId"):
            if field in identify:
                track[field] = identify[field]
        out += [Outgoing(kind=kind, subject=key, person=r.key, message=identify),
                Outgoing(kind=kind, subject=key, person=r.key, message=track)]  # fmt: skip
    return out


def changes_deliver(*, audience_id: int, entered: Sequence[int], exited: Sequence[int], at: datetime) -> int:
    """What the destinations that take the audience are owed for these entries and exits
    (in the caller's transaction). Nothing is read when no destination takes it."""
    found = routes()
    if not found or not (entered or exited):
        return 0
    key = Audience.objects.filter(pk=audience_id).values_list("key", flat=True).first()
    if key is None or not subscribed("audience", [key], found=found):
        return 0
    people = recipients([*entered, *exited])
    messages: list[Outgoing] = []
    for pids, value in ((entered, True), (exited, False)):
        for pid in pids:
            if (r := people.get(pid)) is not None:
                messages += messages_for(audience_id=audience_id, key=key, r=r, entered=value, at=at)
    done = deliveries_enqueue(messages=messages, found=found)
    return done.pending + done.filtered


def new_emails_deliver(rows: Iterable[FeedRow]) -> int:
    """A member who gains an email is synced again, for that email (Segment re-syncs on a new
    external id). Run before the feed's rows are evaluated, so an exit they cause follows."""
    gained: dict[int, set[str]] = {}
    for row in rows:
        # A merge's winner lists the loser's identifiers too: the loser's stays move without an
        # entry (audiences.services._transfer), so its emails are not sent again.
        if row.what.get("merged"):
            continue
        for ident in row.what.get("identifiers") or ():
            kind, _, value = str(ident).partition(":")
            if kind == "email" and value and not row.what.get("merged_into"):
                gained.setdefault(row.profile_id, set()).add(value)
    if not gained:
        return 0
    found = routes()
    if not found:
        return 0
    stays = list(AudienceMember.objects.filter(profile_id__in=list(gained)).values_list("audience_id", "profile_id"))
    keys = dict(Audience.objects.filter(pk__in={a for a, _ in stays}).values_list("pk", "key"))
    wanted = subscribed("audience", keys.values(), found=found)
    stays = [(a, p) for a, p in stays if keys.get(a) in wanted]
    if not stays:
        return 0
    people = recipients(p for _, p in stays)
    now = timezone.now()
    messages: list[Outgoing] = []
    for audience_id, pid in stays:
        if (r := people.get(pid)) is not None:
            emails = sorted(gained[pid] & set(r.emails))
            messages += messages_for(audience_id=audience_id, key=keys[audience_id], r=r, entered=True, at=now,
                                     emails=emails, id_prefix="resync-")  # fmt: skip
    done = deliveries_enqueue(messages=messages, found=found)
    return done.pending + done.filtered


def destinations_of(audience_id: int) -> list[DestinationLink]:
    """The audience page's list: the destinations that take it, and their sync state."""
    key = Audience.objects.filter(pk=audience_id).values_list("key", flat=True).first()
    if key is None:
        return []
    return [
        DestinationLink(s.destination.name, reverse("admin:destinations_destination_change", args=[s.destination.pk]),
                        s.status, s.last_delivered_at)
        for s in subject_destinations(kind="audience", key=key)
    ]  # fmt: skip


class AudienceMembers:
    """Pages of an audience's current members for a full sync (destinations' provider)."""

    def subjects(self) -> list[str]:
        return list(Audience.objects.filter(enabled=True).order_by("key").values_list("key", flat=True))

    def page(self, *, subject: str, cursor: str, limit: int, id_prefix: str) -> MembersPage | None:
        audience = Audience.objects.filter(key=subject).first()
        if audience is None:
            return None
        from audiences.services import audience_lock  # services imports this module

        audience_lock(audience.pk)  # no entry or exit of this audience commits meanwhile
        after = int(cursor or 0)
        rows = list(AudienceMember.objects.filter(audience_id=audience.pk, profile_id__gt=after)
                    .order_by("profile_id").values_list("profile_id", "entered_at")[:limit])  # fmt: skip
        people = recipients(pid for pid, _ in rows)
        messages: list[Outgoing] = []
        for pid, entered_at in rows:
            if (r := people.get(pid)) is not None:
                messages += messages_for(audience_id=audience.pk, key=subject, r=r, entered=True, at=entered_at,
                                         kind="sync", id_prefix=id_prefix)  # fmt: skip
        total = AudienceMember.objects.filter(audience_id=audience.pk).count()
        return MembersPage(messages, str(rows[-1][0]) if len(rows) == limit else None, total)
