"""Reads for the admin profile page and its event timeline.

`profile_page` gathers what the header, traits (custom and computed), identities, identity graph
and history show, in a fixed number of queries whatever the profile's size. `profile_timeline` pages the events by
cursor (through `profile_events`, keyset on the timeline index) and places merges inline where
they happened. The shaping of events and the interleaving are pure functions below them.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, tzinfo
from typing import Any

import orjson

from profiles.computed.selectors import ProfileComputedTrait, profile_computed_traits
from profiles.computed.summary import TYPE_LABELS, definition_summary
from profiles.counting import queryset_count_estimate
from profiles.graph_svg import GraphEdge, GraphNode, GraphPicture, graph_legend, identity_graph_svg
from profiles.models import Event, IdentityLink, Merge, Profile
from profiles.selectors import Explanation, profile_events, profile_explain
from profiles.timeline import Cursor

# Segment's email spec (§9) and the Engage events source: their subject, campaign and link
# are what a marketer reads on the timeline.
EMAIL_EVENTS = frozenset({"Unsubscribed", "Email Opened", "Email Link Clicked", "Email Delivered", "Email Bounced"})
TOP_TRAITS = ("name", "email", "firstName", "lastName", "phone", "company", "title", "plan")
# The header counts a person's events exactly up to here (an index-only scan: ~3 ms); past it
# it shows PostgreSQL's estimate, as the profile list does (100,000 entries cost ~25 ms).
EVENT_COUNT_UP_TO = 10_000
_LAST_KEY = 2**63  # a manual merge has no event: it sorts after every event of its instant


@dataclass(frozen=True)
class ProfilePage:
    explanation: Explanation
    event_count: tuple[int, bool]  # (count, exact)
    graph: GraphPicture
    legend: list[tuple[str, str]]
    merge_keys: dict[int, tuple[datetime, int]]  # merge id -> where it sits on the timeline
    computed: list[ProfileComputedTrait] = field(default_factory=list)  # every enabled definition

    @property
    def profile(self) -> Profile:
        return self.explanation.profile

    @property
    def event_count_text(self) -> str:
        count, exact = self.event_count
        if exact:
            return f"{count:,}"
        return f"about {round(count, 3 - len(str(count))):,}"  # three significant digits

    @property
    def name(self) -> str:
        traits = self.profile.traits or {}
        full = " ".join(str(traits[k]) for k in ("firstName", "lastName") if traits.get(k))
        return str(traits.get("name") or full or "")

    @property
    def email(self) -> str:
        email = (self.profile.traits or {}).get("email")
        if email:
            return str(email)
        return next((i.value for i in self.explanation.identities if i.kind == "email"), "")

    def traits(self) -> list[TraitRow]:
        """The key traits first, then alphabetical, each with when and where it was set."""
        traits, meta = self.profile.traits or {}, self.profile.trait_meta or {}
        order = {k: i for i, k in enumerate(TOP_TRAITS)}
        keys = sorted(traits, key=lambda k: (order.get(k, len(order)), k.lower()))
        return [trait_row(k, traits[k], meta.get(k)) for k in keys]

    def computed_traits(self) -> list[ComputedRow]:
        """The computed traits this profile has a value of, by name, each with its definition."""
        return [computed_row(c) for c in self.computed if c.has_value]

    def computed_without_value(self) -> list[ProfileComputedTrait]:
        return [c for c in self.computed if not c.has_value]


@dataclass(frozen=True)
class ComputedRow:
    trait_id: int
    key: str
    name: str
    type: str
    summary: str
    value: str
    computed_at: datetime | None  # when the value was last set (values are written when they change)
    last_run_at: datetime | None  # the definition's last full or scheduled run
    status: str


def computed_row(c: ProfileComputedTrait) -> ComputedRow:
    """Pure. What the profile page shows of one computed trait."""
    d = c.definition
    return ComputedRow(
        trait_id=c.trait_id, key=c.key, name=c.name, type=TYPE_LABELS.get(d.type, d.type) if d else "",
        summary=definition_summary(d) if d else "(this definition can no longer be read)",
        value=computed_value_text(c.value), computed_at=c.computed_at, last_run_at=c.last_computed_at,
        status=c.status,
    )  # fmt: skip


def computed_value_text(value: Any) -> str:
    """Pure. A list as its items, a whole float as an integer (a score of 7.0 reads 7)."""
    if isinstance(value, list):
        return ", ".join(value_text(v) for v in value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return value_text(value)


@dataclass(frozen=True)
class TraitRow:
    key: str
    value: str
    at: datetime | None
    source_id: int | None
    message_id: str


def trait_row(key: str, value: Any, meta: Any) -> TraitRow:
    """Pure. `meta` is `Profile.trait_meta[key]`: {"at": iso, "source_id", "message_id"}."""
    meta = meta if isinstance(meta, dict) else {}
    try:
        at = datetime.fromisoformat(str(meta["at"]).replace("Z", "+00:00"))
    except (KeyError, ValueError):
        at = None
    source = meta.get("source_id")
    return TraitRow(key=key, value=value_text(value), at=at, source_id=source if isinstance(source, int) else None,
                    message_id=str(meta.get("message_id") or ""))  # fmt: skip


def value_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    return orjson.dumps(value).decode()


def profile_page(*, profile_id: int) -> ProfilePage:
    """Everything the profile page shows above the timeline. Follows a merged-away id to its
    live winner (`explanation.requested` is the one asked for). Raises Profile.DoesNotExist."""
    x = profile_explain(profile_id=profile_id)
    ids = [i.id for i in x.identities]
    links = IdentityLink.objects.filter(a_id__in=ids, b_id__in=ids)
    rows = list(links.values_list("a_id", "b_id", "first_event_id", "first_message_id")) if ids else []
    merge_event_ids = {m.event_id for m in x.merges if m.event_id is not None}
    merge_messages = {m.message_id for m in x.merges if m.event_id is None and m.message_id}
    edges = [
        GraphEdge(a=a, b=b, message_id=msg, merge=(ev in merge_event_ids) if ev is not None else msg in merge_messages)
        for a, b, ev, msg in rows
    ]
    nodes = [GraphNode(id=i.id, kind=i.kind, value=i.value) for i in x.identities]
    stamps = (
        dict(Event.objects.filter(id__in=merge_event_ids).values_list("id", "timestamp")) if merge_event_ids else {}
    )
    merge_keys = {
        m.id: (stamps[m.event_id], m.event_id) if m.event_id in stamps else (m.created_at, _LAST_KEY) for m in x.merges
    }
    return ProfilePage(
        explanation=x,
        event_count=queryset_count_estimate(
            Event.objects.filter(profile_id=x.profile.id), exact_up_to=EVENT_COUNT_UP_TO
        ),
        graph=identity_graph_svg(nodes=nodes, edges=edges),
        legend=graph_legend([n.kind for n in nodes]),
        merge_keys=merge_keys,
        computed=profile_computed_traits(profile_id=x.profile.id),
    )


# --- The timeline --------------------------------------------------------------------------


@dataclass(frozen=True)
class TimelineFilter:
    types: tuple[str, ...] = ()
    names: tuple[str, ...] = ()
    start: datetime | None = None  # inclusive
    end: datetime | None = None  # exclusive

    @property
    def narrows_kind(self) -> bool:
        """Filtering by type or name shows only those events: merges are not among them."""
        return bool(self.types or self.names)


@dataclass(frozen=True)
class EventView:
    event: Event
    title: str
    details: list[tuple[str, str, bool]]  # (label, text, is a link)
    email: bool
    json: str


@dataclass(frozen=True)
class TimelineEntry:
    at: datetime
    event: EventView | None = None
    merge: Merge | None = None


@dataclass(frozen=True)
class TimelineDay:
    day: date
    entries: list[TimelineEntry] = field(default_factory=list)


@dataclass(frozen=True)
class Timeline:
    days: list[TimelineDay]
    next_cursor: Cursor | None
    count: int  # events on this page


def profile_timeline(
    *,
    profile_id: int,
    merges: Sequence[Merge],
    merge_keys: dict[int, tuple[datetime, int]],
    filters: TimelineFilter,
    after: Cursor | None,
    limit: int,
    tz: tzinfo,
) -> Timeline:
    """One page of the timeline, newest first, grouped by day in `tz`. Merges (already read
    by `profile_page`) appear inline at their triggering event, on exactly one page."""
    events, next_cursor = profile_events(
        profile_id=profile_id,
        limit=limit,
        after=after,
        types=list(filters.types) or None,
        names=list(filters.names) or None,
        start=filters.start,
        end=filters.end,
    )
    placed: list[tuple[tuple[datetime, int], Merge]] = []
    if not filters.narrows_kind:
        for m in merges:
            key = merge_keys[m.id]
            if filters.start is not None and key[0] < filters.start:
                continue
            if filters.end is not None and key[0] >= filters.end:
                continue
            placed.append((key, m))
    upper = (after.timestamp, after.id) if after else None
    lower = (events[-1].timestamp, events[-1].id) if next_cursor and events else None
    days = timeline_interleave(events=events, merges=placed, upper=upper, lower=lower, tz=tz)
    return Timeline(days=days, next_cursor=next_cursor, count=len(events))


def timeline_interleave(
    *,
    events: Sequence[Event],
    merges: Iterable[tuple[tuple[datetime, int], Merge]],
    upper: tuple[datetime, int] | None,
    lower: tuple[datetime, int] | None,
    tz: tzinfo,
) -> list[TimelineDay]:
    """Pure. Events (newest first) and the merges whose key falls in this page's keyset range
    [lower, upper), newest first; a merge sits just above the event that triggered it."""
    rows: list[tuple[tuple[datetime, int, int], TimelineEntry]] = [
        ((e.timestamp, e.id, 0), TimelineEntry(at=e.timestamp, event=event_view(e))) for e in events
    ]
    for key, m in merges:
        if (upper is None or key < upper) and (lower is None or key >= lower):
            rows.append(((key[0], key[1], 1), TimelineEntry(at=key[0], merge=m)))
    rows.sort(key=lambda r: r[0], reverse=True)
    days: list[TimelineDay] = []
    for _, entry in rows:
        day = entry.at.astimezone(tz).date()
        if not days or days[-1].day != day:
            days.append(TimelineDay(day=day))
        days[-1].entries.append(entry)
    return days


def _is_link(text: str) -> bool:
    return text.startswith(("https://", "http://"))


def event_view(event: Event) -> EventView:
    """Pure. What the timeline shows of one event: a title, the details a marketer reads
    (email subject, campaign and link; a page's URL), and the full message as JSON."""
    props = event.properties if isinstance(event.properties, dict) else {}
    context = event.context if isinstance(event.context, dict) else {}
    details: list[tuple[str, str, bool]] = []

    def add(label: str, value: Any) -> None:
        if value not in (None, "", [], {}):
            text = value_text(value)
            details.append((label, text, _is_link(text)))

    email = event.type == "track" and (event.event in EMAIL_EVENTS or str(event.event or "").startswith("Email "))
    if event.type == "track":
        title = event.event or "(unnamed event)"
        if email:
            add("Subject", props.get("email_subject"))
            campaign = props.get("campaign_name") or props.get("campaign_id")
            if props.get("campaign_name") and props.get("campaign_id"):
                campaign = f"{props['campaign_name']} ({props['campaign_id']})"
            add("Campaign", campaign)
            add("Link", props.get("link_url"))
            add("List", props.get("list_name"))
        else:
            for key in ("revenue", "value", "currency", "order_id", "product_id", "name", "url"):
                add(key, props.get(key))
    elif event.type in ("page", "screen"):
        page_context = context.get("page")
        page: dict[str, Any] = page_context if isinstance(page_context, dict) else {}
        title = f"Viewed {event.name or props.get('title') or props.get('path') or event.type}"
        add("URL", props.get("url") or page.get("url"))
        add("Referrer", props.get("referrer") or page.get("referrer"))
    elif event.type == "identify":
        traits = event.traits if isinstance(event.traits, dict) else {}
        title = "Identified"
        add("Traits set", ", ".join(sorted(traits)) if traits else None)
        add("User id", event.user_id)
    elif event.type == "group":
        title = f"Joined group {event.group_id}"
    elif event.type == "alias":
        title = f"Alias {event.previous_id} → {event.user_id}"
    else:
        title = event.type
    return EventView(event=event, title=title, details=details, email=email, json=event_json(event))


def _stamp(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


def event_json(event: Event) -> str:
    """The stored message in Segment's shape, pretty-printed."""
    message: dict[str, Any] = {"type": event.type, "messageId": event.message_id}
    for key, value in (("event", event.event), ("name", event.name), ("userId", event.user_id),
                       ("anonymousId", event.anonymous_id), ("groupId", event.group_id),
                       ("previousId", event.previous_id)):  # fmt: skip
        if value is not None:
            message[key] = value
    message |= {"properties": event.properties, "traits": event.traits, "context": event.context,
                "integrations": event.integrations, "timestamp": _stamp(event.timestamp),
                "originalTimestamp": _stamp(event.original_timestamp), "sentAt": _stamp(event.sent_at),
                "receivedAt": _stamp(event.received_at)}  # fmt: skip
    if event.extra:
        message |= {k: v for k, v in event.extra.items() if k not in message}
    return orjson.dumps(message, option=orjson.OPT_INDENT_2).decode()
