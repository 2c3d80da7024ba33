"""Reads of the event log and profiles."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from django.db import connection, models
from django.db.models import Count, F, Func, JSONField, Min, Q, QuerySet, Sum, TextField, Value
from django.db.models.expressions import RawSQL
from django.db.models.functions import Cast, Upper

from profiles.computed.models import ComputedTrait, ComputedTraitValue
from profiles.computed.selectors import profile_computed_values
from profiles.db import pg_cursor
from profiles.identity.extract import normalize_identifier
from profiles.memberships import profile_memberships, profile_memberships_sql
from profiles.models import Demotion, Event, EventBatch, Identity, IdentityAudit, IdentityKind, Merge, Profile
from profiles.timeline import Cursor


def batches_waiting_ids(*, received_before: datetime, limit: int) -> list[int]:
    """Ids of accepted batches the pipeline has not taken, oldest first; parked ones (failed
    too often) are left out, so they never keep newer ones from the sweep."""
    waiting = EventBatch.objects.filter(received_at__lt=received_before, parked_at__isnull=True)
    return list(waiting.order_by("id").values_list("id", flat=True)[:limit])


def batches_parked(*, source_id: int) -> list[EventBatch]:
    """A source's parked batches (failed too often), newest first, for the debugger."""
    return list(
        EventBatch.objects.filter(source_id=source_id, parked_at__isnull=False)
        .defer("payload")
        .order_by("-parked_at")[:100]
    )


def batches_waiting(*, source_id: int) -> tuple[int, datetime | None]:
    """How many of a source's messages wait for the pipeline, and since when."""
    found = EventBatch.objects.filter(source_id=source_id).aggregate(n=Sum("size"), since=Min("received_at"))
    return found["n"] or 0, found["since"]


@dataclass(frozen=True, slots=True)
class Backlog:
    """What waits for the pipeline: accepted batches not yet resolved into the event log."""

    batches: int
    messages: int
    oldest_received_at: datetime | None
    parked: int  # failed too often: an operator retries them (the ingest debugger)


def pipeline_backlog() -> Backlog:
    """The pipeline's backlog (one aggregate over the batches table, which the pipeline keeps
    short: it holds only what waits)."""
    waiting = EventBatch.objects.filter(parked_at__isnull=True).aggregate(
        n=Count("id"), size=Sum("size"), since=Min("received_at")
    )
    parked = EventBatch.objects.filter(parked_at__isnull=False).count()
    return Backlog(waiting["n"] or 0, waiting["size"] or 0, waiting["since"], parked)


def events_recent_for_source(*, source_id: int, limit: int = 50) -> list[Event]:
    """The newest events a source stored, for the ingest debugger."""
    return list(Event.objects.filter(source_id=source_id).order_by("-received_at")[:limit])


def events_count_for_source(*, source_id: int, since: datetime | None = None) -> int:
    qs = Event.objects.filter(source_id=source_id)
    if since is not None:
        qs = qs.filter(received_at__gte=since)
    return qs.count()


# --- Profiles and their identity graph -----------------------------------------------------


@dataclass(frozen=True)
class Explanation:
    """Why a profile holds what it holds: each identifier with the message that brought it,
    and each merge, demotion and staff action, oldest first."""

    profile: Profile
    requested: Profile  # the profile asked for: a tombstone when it was merged away
    identities: list[Identity]
    merges: list[Merge]
    demotions: list[Demotion]
    audits: list[IdentityAudit]


def profile_live(*, profile: Profile) -> Profile:
    """The live profile a (possibly merged-away) profile resolves to."""
    seen = set()
    while profile.merged_into_id is not None and profile.id not in seen:
        seen.add(profile.id)
        profile = Profile.objects.get(id=profile.merged_into_id)
    return profile


def profile_explain(*, profile_id: int, limit: int = 500) -> Explanation:
    """Raises Profile.DoesNotExist for an unknown id."""
    requested = Profile.objects.get(id=profile_id)
    live = profile_live(profile=requested)
    family = [live.id, *Profile.objects.filter(merged_into=live).values_list("id", flat=True)]
    return Explanation(
        profile=live,
        requested=requested,
        identities=list(Identity.objects.filter(profile=live).order_by("first_seen_at", "id")),
        merges=list(
            Merge.objects.filter(Q(winner_id__in=family) | Q(loser_id__in=family))
            .select_related("winner", "loser", "actor")
            .order_by("created_at", "id")[:limit]
        ),
        demotions=list(Demotion.objects.filter(profile_id__in=family).order_by("created_at", "id")[:limit]),
        audits=list(
            IdentityAudit.objects.filter(profile_id__in=family).select_related("actor").order_by("created_at", "id")
        ),
    )


M = TypeVar("M", bound=models.Model)


def row_as_model(model: type[M], sql: str, params: Sequence[Any]) -> M | None:
    """The first row of `sql` as a `model` instance, or None. The select list must be
    `columns_of(model, alias)`. For the reads every API request makes: on PostgreSQL a
    server-side-bound cursor and no queryset machinery (half the CPU of `objects.raw`);
    elsewhere `objects.raw`."""
    if connection.vendor != "postgresql":
        return next(iter(model._default_manager.raw(sql, list(params))), None)
    with pg_cursor(parse_json=True) as cursor:
        cursor.execute(sql, list(params))
        row = cursor.fetchone()
    return model.from_db(connection.alias, [f.attname for f in model._meta.concrete_fields], row) if row else None


def columns_of(model: type[models.Model], alias: str) -> str:
    return ", ".join(f"{alias}.{connection.ops.quote_name(f.attname)}" for f in model._meta.concrete_fields)


def profile_lookup(*, kind: str, value: str) -> Profile | None:
    """The live profile behind `kind:value`, where kind is any identity kind or `use` for the
    public id (`use_…`). A merged-away id or identifier finds the winner; None if unknown.

    One SQL statement, written out: the ORM spent longer compiling this query than
    PostgreSQL spent answering it, and the Profile API runs it on every lookup."""
    kind = kind.strip().lower()
    if kind in _PUBLIC_ID_KINDS:
        key = value if value.startswith("use_") else f"use_{value}"
        profile = row_as_model(Profile, f"SELECT {_PROFILE_COLUMNS} FROM {_PROFILE_TABLE} p WHERE p.key = %s", [key])
    else:
        normalized = normalize_identifier(kind, value)
        if normalized is None:
            return None
        profile = row_as_model(
            Profile,
            f"SELECT {_PROFILE_COLUMNS} FROM {_PROFILE_TABLE} p JOIN {Identity._meta.db_table} i "
            "ON i.profile_id = p.id WHERE i.kind = %s AND i.value = %s",
            [kind, normalized],
        )
    return profile_live(profile=profile) if profile is not None else None


_PROFILE_TABLE = Profile._meta.db_table
_PROFILE_COLUMNS = columns_of(Profile, "p")


def profile_groups(
    *, profile_id: int, after: tuple[datetime, str] | None, limit: int
) -> tuple[list[dict[str, Any]], bool]:
    """The groups (accounts) a profile's events joined, oldest first by when it first joined
    each, then by group id: `limit` of them after the keyset `after` (the last page's
    `(created_at, group_id)`), and whether more follow."""
    groups = (
        Event.objects.filter(profile_id=profile_id, type="group", group_id__isnull=False)
        .values("group_id")
        .annotate(source_id=Min("source_id"), created_at=Min("timestamp"))
    )
    if after is not None:
        at, group_id = after
        groups = groups.filter(Q(created_at__gt=at) | Q(created_at=at, group_id__gt=group_id))
    rows: list[dict[str, Any]] = [dict(row) for row in groups.order_by("created_at", "group_id")[: limit + 1]]
    return rows[:limit], len(rows) > limit


def profile_events(
    *,
    profile_id: int,
    limit: int,
    after: Cursor | None = None,
    oldest_first: bool = False,
    types: list[str] | None = None,
    names: list[str] | None = None,
    exclude_names: list[str] | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
) -> tuple[list[Event], Cursor | None]:
    """One page of a profile's events, newest first (or oldest first), and the cursor of the
    next page (None on the last). Keyset pagination on (timestamp, id) over the timeline
    index: a page costs the same on a profile with 100k events as with ten, and pages
    neither repeat nor skip while events arrive. `start` is inclusive, `end` exclusive;
    `names` matches the track event name or the page/screen name."""
    qs = Event.objects.filter(profile_id=profile_id)
    if types:
        qs = qs.filter(type__in=types)
    if names:
        qs = qs.filter(Q(event__in=names) | Q(name__in=names))
    if exclude_names:
        qs = qs.exclude(event__in=exclude_names)
    if start is not None:
        qs = qs.filter(timestamp__gte=start)
    if end is not None:
        qs = qs.filter(timestamp__lt=end)
    if after is not None:
        if oldest_first:
            qs = qs.filter(Q(timestamp__gt=after.timestamp) | Q(timestamp=after.timestamp, id__gt=after.id))
        else:
            qs = qs.filter(Q(timestamp__lt=after.timestamp) | Q(timestamp=after.timestamp, id__lt=after.id))
    order = ("timestamp", "id") if oldest_first else ("-timestamp", "-id")
    rows = list(qs.order_by(*order)[: limit + 1])
    if len(rows) <= limit:
        return rows, None
    rows = rows[:limit]
    return rows, Cursor(timestamp=rows[-1].timestamp, id=rows[-1].id)


# --- Search ---------------------------------------------------------------------------------

# Below this many characters a fragment matches too much to be useful, and pg_trgm cannot use
# its index for it (a trigram needs three characters): such a query only finds exact identifiers.
SEARCH_MIN_FRAGMENT = 3
# Identities whose email contains the fragment, at most: the profile ids go into one
# `id IN (…)` beside the trait index scan, so a fragment like "gmail" stays bounded.
SEARCH_MAX_IDENTITY_HITS = 1000


def _trait_values_text() -> Func | RawSQL:
    """The profile's trait values (not keys) as upper-case text: on PostgreSQL the very
    expression that `profile_trait_values_trgm` (migration 0007) indexes with gin_trgm_ops."""
    if connection.vendor == "postgresql":
        values = Func(F("traits"), Value("strict $.*"), function="jsonb_path_query_array", output_field=JSONField())
        return Upper(Cast(values, output_field=TextField()))
    # SQLite: the values of the top-level keys, through json_each (a scan; no index).
    return Upper(RawSQL('(SELECT group_concat(value, char(31)) FROM json_each("profiles_profile"."traits"))', []))


def profile_search(*, query: str) -> QuerySet[Profile]:
    """Live profiles matching `query`, unordered (callers order and page it).

    - `kind:value` where kind is an identity kind (or `use`): that identifier, exactly, through
      `profile_lookup` (the unique (kind, value) index; merged-away identifiers find the winner).
    - `use_…`: that profile (or its winner).
    - `key:value` where key is not an identity kind: profiles whose trait `key` equals value.
    - anything else: any identifier equal to it (one probe of the unique index per kind);
      when none is, emails containing it, and trait values containing it (case-insensitive; on PostgreSQL
      both fragment searches are pg_trgm GIN index scans, so they stay fast on 1M profiles).

    An empty query matches every live profile."""
    live = Profile.objects.filter(merged_into__isnull=True)
    text = query.strip()
    if not text:
        return live
    if text.startswith("use_") and " " not in text:
        found = profile_lookup(kind="use", value=text)
        return live.filter(id=found.id) if found else live.none()
    kinds = set(IdentityKind.objects.values_list("kind", flat=True)) | {"user_id", "anonymous_id", "email"}
    head, sep, tail = text.partition(":")
    head = head.strip().lower()
    if sep and tail.strip():
        if head in kinds or head in ("use", "profile_id", "segment_id"):
            found = profile_lookup(kind=head, value=tail)
            return live.filter(id=found.id) if found else live.none()
        if head.replace("_", "").replace(".", "").isalnum():
            value = tail.strip()
            # `__exact` makes every part a key: without it `contains:x` or `has_key:name` ran
            # those JSON lookups (and `contains` is a 500 on SQLite).
            condition = Q(**{f"traits__{head.replace('.', '__')}__exact": value})
            if len(value) >= SEARCH_MIN_FRAGMENT:  # narrow by the trigram index first
                return live.alias(_tv=_trait_values_text()).filter(Q(_tv__contains=value.upper()) & condition)
            return live.filter(condition)
    exact = Q()
    for kind in sorted(kinds):
        normalized = normalize_identifier(kind, text)
        if normalized is not None:
            exact |= Q(kind=kind, value=normalized)
    ids = set(Identity.objects.filter(exact).values_list("profile_id", flat=True)) if exact else set()
    if ids or len(text) < SEARCH_MIN_FRAGMENT:
        # Someone's exact identifier: that is who was meant. The fragment searches would
        # add only look-alikes, at 100 times the cost (87 ms against 0.3 ms on 1M profiles).
        return live.filter(id__in=ids)
    ids.update(
        Identity.objects.filter(kind="email", value__contains=text.lower()).values_list("profile_id", flat=True)[
            :SEARCH_MAX_IDENTITY_HITS
        ]
    )
    return live.alias(_tv=_trait_values_text()).filter(Q(id__in=sorted(ids)) | Q(_tv__contains=text.upper()))


@dataclass(frozen=True, slots=True)
class TraitValue:
    """One trait as the Profile API shows it: a custom trait (set by identify calls, with its
    source) or a computed one (with its definition and when it was computed)."""

    value: Any
    trait_class: str  # "custom_trait" | "computed_trait" | "audience"
    updated_at: str | None
    source_id: int | None = None
    definition: str | None = None

    def verbose(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "value": self.value, "source_id": None if self.source_id is None else str(self.source_id),
            "updated_at": self.updated_at, "class": self.trait_class,
        }  # fmt: skip
        if self.definition is not None:
            out["definition"] = self.definition
            out["computed_at"] = self.updated_at
        return out


def profile_traits(*, profile: Profile, trait_class: str | None = None) -> dict[str, TraitValue]:
    """A profile's traits by key: custom traits, then computed traits (which win a key both
    have: a computed key is refused while custom traits use it, but an identify may set one
    later), then audience memberships (`key: true`, as Segment shows them). `trait_class`
    keeps one class only."""
    computed = (
        [(c.key, c.value, c.computed_at) for c in profile_computed_values(profile_id=profile.id).values()]
        if trait_class in (None, "computed_trait")
        else []
    )
    audiences = profile_memberships(profile.id) if trait_class in (None, "audience") else []
    return _traits_of(profile, computed, audiences, trait_class)


def _traits_of(
    profile: Profile,
    computed: Sequence[tuple[str, Any, datetime]],
    audiences: Sequence[tuple[str, datetime]],
    trait_class: str | None,
) -> dict[str, TraitValue]:
    out: dict[str, TraitValue] = {}
    if trait_class in (None, "custom_trait"):
        meta = profile.trait_meta or {}
        for key, v in (profile.traits or {}).items():
            m = meta.get(key) or {}
            out[key] = TraitValue(v, "custom_trait", m.get("at"), m.get("source_id"))
    for key, value, computed_at in computed:
        out[key] = TraitValue(value, "computed_trait", _iso(computed_at), definition=key)
    for key, entered_at in audiences:  # Segment: `<audience_key>: true` per current membership
        out.setdefault(key, TraitValue(True, "audience", _iso(entered_at), definition=key))
    return out


def profile_lookup_traits(
    *, kind: str, value: str, trait_class: str | None = None
) -> tuple[Profile, dict[str, TraitValue]] | None:
    """`profile_lookup` and `profile_traits` of what it finds, or None if unknown: on
    PostgreSQL in one statement (the identity, its profile, the computed values and the
    audiences as json subqueries), as the Profile API's `/traits` runs it on every page view;
    a merged-away profile, and other databases, take the two calls."""
    kind = kind.strip().lower()
    normalized = normalize_identifier(kind, value) if kind not in _PUBLIC_ID_KINDS else None
    if connection.vendor != "postgresql" or normalized is None:
        profile = profile_lookup(kind=kind, value=value)
        return (profile, profile_traits(profile=profile, trait_class=trait_class)) if profile is not None else None
    with pg_cursor(parse_json=True) as cursor:
        cursor.execute(_lookup_traits_sql(trait_class), [kind, normalized])
        row = cursor.fetchone()
    if row is None:
        return None
    width = len(_PROFILE_ATTNAMES)
    profile = Profile.from_db(connection.alias, _PROFILE_ATTNAMES, row[:width])
    if profile.merged_into_id is not None:  # a tombstone (rare): follow it, then read its traits
        profile = profile_live(profile=profile)
        return profile, profile_traits(profile=profile, trait_class=trait_class)
    computed = [(key, v, datetime.fromisoformat(at)) for key, v, at in row[width] or ()]
    audiences = [(key, datetime.fromisoformat(at)) for key, at in row[width + 1] or ()]
    return profile, _traits_of(profile, computed, audiences, trait_class)


_PUBLIC_ID_KINDS = ("use", "profile_id", "segment_id")
_PROFILE_ATTNAMES = [f.attname for f in Profile._meta.concrete_fields]
_COMPUTED_SQL = (
    "(SELECT json_agg(json_build_array(t.key, v.value, v.computed_at)) "
    f"FROM {ComputedTraitValue._meta.db_table} v JOIN {ComputedTrait._meta.db_table} t ON t.id = v.trait_id "
    "WHERE v.profile_id = p.id AND t.enabled)"
)


def _lookup_traits_sql(trait_class: str | None) -> str:
    # Built per call: the audiences' subquery is registered at startup, after this module loads.
    computed = _COMPUTED_SQL if trait_class in (None, "computed_trait") else "NULL"
    audiences = profile_memberships_sql() if trait_class in (None, "audience") else "NULL"
    return (
        f"SELECT {_PROFILE_COLUMNS}, {computed}, {audiences} FROM {_PROFILE_TABLE} p "
        f"JOIN {Identity._meta.db_table} i ON i.profile_id = p.id WHERE i.kind = %s AND i.value = %s"
    )


def _iso(at: datetime) -> str:
    return at.astimezone(UTC).isoformat().replace("+00:00", "Z")
