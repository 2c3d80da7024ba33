"""Audiences: define (validated, versioned), compute (in full, on a schedule, in real time
from the change feed), preview. Membership changes are written with their history and an
entry or exit for the destinations, in one transaction."""

from __future__ import annotations

import logging
import re
import time
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db import DatabaseError, IntegrityError, connection, transaction
from django.db.models import F
from django.db.models.functions import Greatest
from django.utils import timezone
from kombu.exceptions import OperationalError as BrokerError

from audiences.compiler import KNOWN_KINDS, Context, counts_query, members_query, preview_query, sample_query
from audiences.models import KEY_PATTERN, Audience, AudienceChange, AudienceMember, AudienceVersion, Membership
from audiences.outbound import changes_deliver, new_emails_deliver
from audiences.query_language import QueryParseError, format_query, parse_query
from audiences.rules import (
    AudienceCondition,
    Node,
    TraitCondition,
    parse_rule,
    rule_dependencies,
    rule_json,
    rule_nodes,
)
from audit.services import audit_record
from profiles.models import ComputedTrait, Profile
from profiles.query.dialects import dialect_named
from profiles.query.events import EVENTS
from profiles.query.filters import QueryError
from profiles.services.bulk import rows_insert
from profiles.services.events import events_scoped
from profiles.services.feed import FeedRow

logger = logging.getLogger(__name__)

_AUDIENCE_LOCK = 0x43444155  # "CDAU": one advisory lock per audience while its members change
FULL_STATEMENT_TIMEOUT = "30min"
PREVIEW_STATEMENT_TIMEOUT_MS = 30_000
FIELDS = ("key", "name", "description", "rule", "query", "include_anonymous", "enabled", "schedule_minutes")
# Feed changes after which every audience looks at the profile again.
_EVERYTHING = ("merged", "split", "split_from", "rebuilt", "removed")


# --- Definitions ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Parsed:
    node: Node
    rule: dict[str, Any]
    query: str


def rule_from(data: Mapping[str, Any]) -> Parsed:
    """The rule of a body that has `rule` (the tree) or `query` (Segment's language), not
    both. Raises `QueryError` naming the field."""
    has_rule, has_query = data.get("rule") is not None, data.get("query") not in (None, "")
    if has_rule == has_query:
        raise QueryError("rule", "Give the rule as a tree (rule) or in Segment's query language (query), not both.")
    if has_query:
        text = data["query"]
        if not isinstance(text, str) or len(text) > 20_000:
            raise QueryError("query", "query is a string of at most 20,000 characters.")
        try:
            tree = parse_query(text)
        except QueryParseError as exc:
            raise QueryError("query", str(exc)) from None
        node = parse_rule(tree, path="query")
        return Parsed(node, rule_json(node), text)
    node = parse_rule(data["rule"], path="rule")
    return Parsed(node, rule_json(node), "")


def query_of(rule: Mapping[str, Any]) -> str | None:
    """The rule in Segment's query language, when it can be written so."""
    try:
        return format_query(rule)
    except (QueryError, ValueError):
        return None


def _context(node: Node, *, include_anonymous: bool, path: str, own_key: str | None = None) -> Context:
    """Resolve what the rule references; unknown traits and audiences, and cycles, are
    errors."""
    deps = rule_dependencies(node)
    computed = dict(ComputedTrait.objects.filter(key__in=deps.traits).values_list("key", "id"))
    for key in sorted(deps.traits - set(computed)):
        if not Profile.objects.filter(traits__has_key=key).exists():
            raise QueryError(_path_of(node, path, "trait", key), f"Unknown trait {key!r}: no computed trait and no "
                             "profile has it.")  # fmt: skip
    audiences = dict(Audience.objects.filter(key__in=deps.audiences).values_list("key", "id"))
    for key in sorted(deps.audiences - set(audiences)):
        if key != own_key:
            raise QueryError(_path_of(node, path, "audience", key), f"Unknown audience {key!r}.")
    if deps.audiences:
        _check_cycles(own_key, deps.audiences, node, path)
    return Context(computed=computed, audiences=audiences, include_anonymous=include_anonymous)


def _path_of(node: Node, root: str, kind: str, key: str) -> str:
    for path, n in rule_nodes(node, root):
        if kind == "trait" and isinstance(n, TraitCondition) and n.key == key:
            return path
        if kind == "audience" and isinstance(n, AudienceCondition) and n.key == key:
            return path
    return root


def _check_cycles(own_key: str | None, refs: Iterable[str], node: Node, path: str) -> None:
    graph = {
        a.key: set((a.depends_on or {}).get("audiences") or ()) for a in Audience.objects.only("key", "depends_on")
    }
    if own_key is not None:
        graph[own_key] = set(refs)
    for start in sorted(refs):
        trail = _cycle(graph, start, own_key) if own_key else None
        if start == own_key or trail:
            chain = " → ".join([own_key or "", *(trail or [start])])
            raise QueryError(_path_of(node, path, "audience", start), f"This would create a cycle: {chain}.")


def _cycle(graph: Mapping[str, set[str]], start: str, target: str) -> list[str] | None:
    """A path from `start` back to `target` through audience references, if any."""
    stack: list[tuple[str, list[str]]] = [(start, [start])]
    seen: set[str] = set()
    while stack:
        key, trail = stack.pop()
        if key == target:
            return trail
        if key in seen:
            continue
        seen.add(key)
        for nxt in sorted(graph.get(key, ())):
            stack.append((nxt, [*trail, nxt]))
    return None


def key_check(key: Any) -> str:
    if not isinstance(key, str) or not re.match(KEY_PATTERN, key) or len(key) > 64:
        raise QueryError("key", "key is snake_case (a_key_like_this), at most 64 characters.")
    return key


def _schedule(v: Any, default: int) -> int:
    if v is None:
        return default
    if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= 7 * 24 * 60:
        raise QueryError("schedule_minutes", "schedule_minutes is a whole number of minutes, 1 to 10080.")
    return v


def _flag(data: Mapping[str, Any], name: str, default: bool) -> bool:
    v = data.get(name, default)
    if not isinstance(v, bool):
        raise QueryError(name, f"{name} is true or false.")
    return v


def _text(data: Mapping[str, Any], name: str, default: str, limit: int) -> str:
    v = data.get(name, default)
    if v is None:
        return default
    if not isinstance(v, str) or len(v) > limit:
        raise QueryError(name, f"{name} is a string of at most {limit} characters.")
    return v


def _actor_name(actor: Any) -> str:
    if actor is None:
        return ""
    if hasattr(actor, "get_username"):
        return str(actor.get_username())
    return str(getattr(actor, "audit_label", "") or "")


def _deps_json(node: Node) -> tuple[dict[str, Any], bool]:
    deps = rule_dependencies(node)
    return (
        {"events": sorted(deps.events), "traits": sorted(deps.traits), "audiences": sorted(deps.audiences)},
        deps.time,
    )


def audience_check(*, rule: Any, include_anonymous: bool = False, key: str | None = None) -> Parsed:
    """Validate a rule tree as saving it would (shape, the traits and audiences it names, no
    cycle through `key`), writing nothing. Raises `QueryError` whose path starts `rule`."""
    parsed = rule_from({"rule": rule})
    _context(parsed.node, include_anonymous=include_anonymous, path="rule", own_key=key)
    return parsed


def audience_create(*, data: Mapping[str, Any], actor: Any = None, reason: str = "") -> Audience:
    """Define an audience; it is computed over all history right after (a task). Raises
    `QueryError` naming the bad field or node."""
    unknown = sorted(set(data) - set(FIELDS))
    if unknown:
        raise QueryError(unknown[0], f"Unknown field; an audience has {', '.join(FIELDS)}.")
    key = key_check(data.get("key"))
    parsed = rule_from(data)
    include_anonymous = _flag(data, "include_anonymous", False)
    _context(parsed.node, include_anonymous=include_anonymous, path="query" if parsed.query else "rule", own_key=key)
    name = _text(data, "name", key.replace("_", " ").capitalize(), 200) or key
    deps, timed = _deps_json(parsed.node)
    user = actor if hasattr(actor, "get_username") and getattr(actor, "pk", None) else None
    with transaction.atomic():
        if Audience.objects.filter(key=key).exists():
            raise QueryError("key", f"An audience {key!r} exists already.")
        try:
            audience = Audience.objects.create(
                key=key, name=name, description=_text(data, "description", "", 5000), rule=parsed.rule,
                query=parsed.query, include_anonymous=include_anonymous, enabled=_flag(data, "enabled", True),
                schedule_minutes=_schedule(data.get("schedule_minutes"), 15), depends_on=deps, time_dependent=timed,
                created_by=user,
            )  # fmt: skip
        except IntegrityError:
            raise QueryError("key", f"An audience {key!r} exists already.") from None
        if not audience.enabled:
            Audience.objects.filter(pk=audience.pk).update(status=Audience.Status.DISABLED)
        AudienceVersion.objects.create(audience=audience, version=1, rule=parsed.rule, query=parsed.query,
                                       author=user, author_name=_actor_name(actor), reason=reason)  # fmt: skip
        if actor is not None and (user or getattr(actor, "audit_label", None)):
            audit_record(actor=actor, action="add", target=audience, reason=reason or "created",
                         changes={"rule": [None, parsed.rule]})  # fmt: skip
        if audience.enabled:
            transaction.on_commit(lambda: enqueue_compute(audience_id=audience.pk, cause="rule v1"))
    audience.refresh_from_db()
    return audience


def audience_update(*, key: str, data: Mapping[str, Any], actor: Any = None, reason: str = "") -> Audience:
    """Change an audience (its key never changes). A new rule is a new version, recomputed
    over all history. Raises `Audience.DoesNotExist` or `QueryError`."""
    unknown = sorted(set(data) - set(FIELDS))
    if unknown:
        raise QueryError(unknown[0], f"Unknown field; an audience has {', '.join(FIELDS)}.")
    if "key" in data and data["key"] != key:
        raise QueryError("key", "An audience's key never changes: make a new audience instead.")
    audience = Audience.objects.get(key=key)
    parsed = rule_from(data) if ("rule" in data or "query" in data) else None
    if "include_anonymous" in data and _flag(data, "include_anonymous", False) != audience.include_anonymous:
        raise QueryError("include_anonymous", "include_anonymous cannot change once an audience exists (as in "
                         "Segment): make a new audience instead.")  # fmt: skip
    if parsed is not None:
        _context(parsed.node, include_anonymous=audience.include_anonymous,
                 path="query" if parsed.query else "rule", own_key=key)  # fmt: skip
    changes: dict[str, Any] = {}
    user = actor if hasattr(actor, "get_username") and getattr(actor, "pk", None) else None
    recompute: str | None = None
    with transaction.atomic():
        audience = Audience.objects.select_for_update().get(pk=audience.pk)
        for name, limit in (("name", 200), ("description", 5000)):
            if name in data:
                new = _text(data, name, "", limit)
                if new != getattr(audience, name):
                    changes[name] = [getattr(audience, name), new]
                    setattr(audience, name, new)
        if "schedule_minutes" in data:
            audience.schedule_minutes = _schedule(data["schedule_minutes"], audience.schedule_minutes)
        if parsed is not None and (parsed.rule != audience.rule or parsed.query != audience.query):
            changes["rule"] = [audience.rule, parsed.rule]
            audience.version += 1
            audience.rule, audience.query = parsed.rule, parsed.query
            audience.depends_on, audience.time_dependent = _deps_json(parsed.node)
            AudienceVersion.objects.create(audience=audience, version=audience.version, rule=parsed.rule,
                                           query=parsed.query, author=user, author_name=_actor_name(actor),
                                           reason=reason)  # fmt: skip
            recompute = f"rule v{audience.version}"
        if "enabled" in data:
            enabled = _flag(data, "enabled", True)
            if enabled != audience.enabled:
                changes["enabled"] = [audience.enabled, enabled]
                audience.enabled = enabled
                recompute = recompute or (f"enabled (v{audience.version})" if enabled else None)
        if not audience.enabled:
            audience.status, recompute = Audience.Status.DISABLED, None
        elif recompute:
            audience.status = Audience.Status.COMPUTING
        audience.updated_at = timezone.now()
        audience.save()
        if changes and actor is not None and (user or getattr(actor, "audit_label", None)):
            audit_record(actor=actor, action="change", target=audience, reason=reason or "changed", changes=changes)
        if recompute:
            cause = recompute
            transaction.on_commit(lambda: enqueue_compute(audience_id=audience.pk, cause=cause))
    return audience


def audience_delete(*, key: str, actor: Any = None, reason: str = "") -> None:
    """Delete an audience, unless another references it. Its members leave (recorded for
    the destinations as exits) before it goes."""
    with transaction.atomic():
        audience = Audience.objects.select_for_update().get(key=key)
        users = [
            a.key for a in Audience.objects.exclude(pk=audience.pk) if key in (a.depends_on or {}).get("audiences", [])
        ]
        if users:
            raise QueryError("key", f"Audience {key!r} is used by {', '.join(sorted(users))}: change those first.")
        if actor is not None:
            audit_record(actor=actor, action="delete", target=audience, reason=reason or "deleted",
                         changes={"rule": [audience.rule, None]})  # fmt: skip
        audience.delete()


def enqueue_compute(*, audience_id: int, cause: str = "time") -> None:
    from audiences.tasks import compute_audience

    try:
        compute_audience.delay(audience_id, cause)
    except (BrokerError, OSError):  # beat's schedule picks computing audiences up
        logger.warning("Could not enqueue the computation of audience %s.", audience_id, exc_info=True)


# --- Computing -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Live:
    """An audience as the engine uses it."""

    id: int
    key: str
    node: Node
    ctx: Context
    deps: Mapping[str, Any]
    time_dependent: bool


def _live(audience: Audience) -> Live:
    node = parse_rule(audience.rule)
    deps = rule_dependencies(node)
    computed = dict(ComputedTrait.objects.filter(key__in=deps.traits).values_list("key", "id"))
    audiences = dict(Audience.objects.filter(key__in=deps.audiences).values_list("key", "id"))
    ctx = Context(computed=computed, audiences=audiences, include_anonymous=audience.include_anonymous)
    return Live(audience.pk, audience.key, node, ctx, audience.depends_on or {}, audience.time_dependent)


def ordered(audiences: Sequence[Audience]) -> list[Audience]:
    """Audiences after the audiences they reference (a topological order)."""
    by_key = {a.key: a for a in audiences}
    out: list[Audience] = []
    state: dict[str, int] = {}

    def visit(a: Audience) -> None:
        if state.get(a.key) == 2:
            return
        if state.get(a.key) == 1:  # a cycle slipped in (refused on save): break it here
            return
        state[a.key] = 1
        for ref in sorted((a.depends_on or {}).get("audiences", [])):
            if ref in by_key:
                visit(by_key[ref])
        state[a.key] = 2
        out.append(a)

    for a in sorted(audiences, key=lambda a: a.key):
        visit(a)
    return out


def audience_lock(audience_id: int) -> None:
    """The audience's lock, to the end of the transaction: its members do not change meanwhile."""
    _lock(audience_id)


def _lock(audience_id: int) -> None:
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s, %s)", [_AUDIENCE_LOCK, audience_id])


def _members_now(live: Live, now: datetime, profile_ids: Sequence[int] | None, events: str = EVENTS) -> set[int]:
    query = members_query(live.node, live.ctx, dialect_named(connection.vendor), now=now, profile_ids=profile_ids,
                          events=events)  # fmt: skip
    with connection.cursor() as cursor:
        cursor.execute(query.text, query.params)
        return {row[0] for row in cursor.fetchall()}


def _ids_where(column: str, ids: Sequence[int]) -> tuple[str, list[Any]]:
    if connection.vendor == "postgresql":
        return f"{column} = ANY(%s::bigint[])", [list(ids)]
    return f"{column} IN (SELECT value FROM json_each(%s))", ["[" + ",".join(str(int(i)) for i in ids) + "]"]


@dataclass(frozen=True, slots=True)
class Applied:
    entered: list[int]
    exited: list[int]


def _apply(
    audience_id: int, new: set[int], scope: Sequence[int] | None, now: datetime, cause: Mapping[int, str] | str
) -> Applied:
    """Make the members in `scope` (everyone: None) be `new`: insert and delete members,
    open and close history intervals, and record each entry and exit for the destinations."""
    current = _current(audience_id, scope)
    entered = sorted(new - current)
    exited = sorted(current - new)

    def why(pid: int) -> str:
        return cause if isinstance(cause, str) else cause.get(pid, "re-evaluated")

    if entered:
        rows_insert(table=AudienceMember._meta.db_table, columns=[("profile_id", "bigint")],
                    constants=[("audience_id", "bigint", audience_id), ("entered_at", "timestamptz", now)],
                    rows=[(pid,) for pid in entered])  # fmt: skip
        rows_insert(table=Membership._meta.db_table, columns=[("profile_id", "bigint"), ("entry_cause", "text")],
                    constants=[("audience_id", "bigint", audience_id), ("entered_at", "timestamptz", now),
                               ("exit_cause", "text", "")],
                    rows=[(pid, why(pid)[:200]) for pid in entered])  # fmt: skip
    if exited:
        _close(audience_id, exited, now, why)
    changes = [(pid, True, why(pid)[:200]) for pid in entered] + [(pid, False, why(pid)[:200]) for pid in exited]
    if changes:
        rows_insert(table=AudienceChange._meta.db_table,
                    columns=[("profile_id", "bigint"), ("entered", "boolean"), ("cause", "text")],
                    constants=[("audience_id", "bigint", audience_id), ("at", "timestamptz", now)],
                    rows=changes)  # fmt: skip
        changes_deliver(audience_id=audience_id, entered=entered, exited=exited, at=now)
    return Applied(entered, exited)


def _current(audience_id: int, scope: Sequence[int] | None) -> set[int]:
    """The members now, of `scope` only if given (by index, never the whole audience)."""
    table = AudienceMember._meta.db_table
    with connection.cursor() as cursor:
        if scope is None:
            cursor.execute(f"SELECT profile_id FROM {table} WHERE audience_id = %s", [audience_id])
            return {row[0] for row in cursor.fetchall()}
        out: set[int] = set()
        ids = list(scope)
        for start in range(0, len(ids), 5000):
            where, params = _ids_where("profile_id", ids[start : start + 5000])
            cursor.execute(f"SELECT profile_id FROM {table} WHERE audience_id = %s AND {where}", [audience_id, *params])
            out.update(row[0] for row in cursor.fetchall())
        return out


def _close(audience_id: int, profile_ids: Sequence[int], now: datetime, why: Any) -> None:
    at = connection.ops.adapt_datetimefield_value(now)  # SQLite: naive UTC text, as Django writes it
    for start in range(0, len(profile_ids), 5000):
        chunk = profile_ids[start : start + 5000]
        where, params = _ids_where("profile_id", chunk)
        causes = {why(pid)[:200] for pid in chunk}
        with connection.cursor() as cursor:
            cursor.execute(f"DELETE FROM {AudienceMember._meta.db_table} WHERE audience_id = %s AND {where}",
                           [audience_id, *params])  # fmt: skip
            if len(causes) == 1:
                cursor.execute(
                    f"UPDATE {Membership._meta.db_table} SET exited_at = %s, exit_cause = %s "
                    f"WHERE audience_id = %s AND exited_at IS NULL AND {where}",
                    [at, causes.pop(), audience_id, *params],
                )
            else:
                for pid in chunk:
                    cursor.execute(
                        f"UPDATE {Membership._meta.db_table} SET exited_at = %s, exit_cause = %s "
                        "WHERE audience_id = %s AND exited_at IS NULL AND profile_id = %s",
                        [at, why(pid)[:200], audience_id, pid],
                    )


@dataclass(frozen=True, slots=True)
class ComputeResult:
    size: int
    entered: int
    exited: int
    duration_ms: int


def audience_compute(*, audience_id: int, cause: str = "time", now: datetime | None = None) -> ComputeResult | None:
    """Recompute an audience over everyone and apply the difference; the audiences that
    reference it follow for the profiles that moved. None when it is gone or disabled."""
    now = now or timezone.now()
    started = time.monotonic()
    audience = Audience.objects.filter(pk=audience_id, enabled=True).first()
    if audience is None:
        return None
    live = _live(audience)
    if audience.status == Audience.Status.PREPARING:
        Audience.objects.filter(pk=audience.pk, status=Audience.Status.PREPARING).update(
            status=Audience.Status.COMPUTING
        )
    try:
        with transaction.atomic():
            if connection.vendor == "postgresql":
                with connection.cursor() as cursor:
                    cursor.execute(f"SET LOCAL statement_timeout = '{FULL_STATEMENT_TIMEOUT}'")
                    cursor.execute("SET LOCAL work_mem = '64MB'")
            _lock(audience.pk)
            applied = _apply(audience.pk, _members_now(live, now, None), None, now, cause)
            moved = sorted({*applied.entered, *applied.exited})
            if moved:
                _follow(audience.key, moved, now, f"audience {audience.key}")
            duration = int((time.monotonic() - started) * 1000)
            size = AudienceMember.objects.filter(audience_id=audience.pk).count()
            Audience.objects.filter(pk=audience.pk).update(
                status=Audience.Status.LIVE, last_error="", last_computed_at=now, last_duration_ms=duration, size=size
            )
    except DatabaseError as exc:
        Audience.objects.filter(pk=audience.pk).update(status=Audience.Status.FAILED, last_error=str(exc)[:2000])
        raise
    return ComputeResult(size, len(applied.entered), len(applied.exited), duration)


def _follow(key: str, profile_ids: Sequence[int], now: datetime, cause: str) -> None:
    """Re-evaluate, for `profile_ids`, the live audiences that reference audience `key`
    (and theirs, in order)."""
    work: dict[str, set[int]] = {key: set(profile_ids)}
    for audience in ordered(list(Audience.objects.filter(enabled=True).exclude(status=Audience.Status.FAILED))):
        refs = set((audience.depends_on or {}).get("audiences", []))
        ids = set().union(*(work.get(r, set()) for r in refs)) if refs else set()
        if not ids:
            continue
        applied = _evaluate(_live(audience), sorted(ids), now, cause)
        if moved := {*applied.entered, *applied.exited}:
            work.setdefault(audience.key, set()).update(moved)


def _evaluate(
    live: Live, profile_ids: Sequence[int], now: datetime, cause: Mapping[int, str] | str, events: str = EVENTS
) -> Applied:
    _lock(live.id)
    applied = _apply(live.id, _members_now(live, now, profile_ids, events), profile_ids, now, cause)
    if applied.entered or applied.exited:
        delta = len(applied.entered) - len(applied.exited)
        _resize(live.id, delta)
    return applied


def _resize(audience_id: int, delta: int) -> None:
    """Move the stored size by `delta`, in one statement (the audience's lock is held)."""
    Audience.objects.filter(pk=audience_id).update(size=Greatest(F("size") + delta, 0))


def audiences_due(*, now: datetime | None = None) -> list[int]:
    """The audiences to recompute now: those still to be computed (a new rule whose task
    was lost), and those that time alone can change whose schedule has come."""
    now = now or timezone.now()
    due = []
    for a in Audience.objects.filter(enabled=True).exclude(status=Audience.Status.FAILED):
        if a.status in (Audience.Status.PREPARING, Audience.Status.COMPUTING):
            stale = a.last_computed_at is None or a.updated_at > a.last_computed_at
            if stale and now - a.updated_at > timedelta(minutes=2):  # its own task had time to start
                due.append(a.pk)
            continue
        if a.time_dependent and (
            a.last_computed_at is None or now - a.last_computed_at >= timedelta(minutes=a.schedule_minutes)
        ):
            due.append(a.pk)
    return due


# --- Real time: the change feed's `audiences` consumer ---------------------------------------


def _cause(what: Mapping[str, Any]) -> str:
    if what.get("merged"):
        return "merge"
    if what.get("split") or what.get("split_from"):
        return "split"
    if events := what.get("events"):
        return "event " + sorted(events)[0]
    if keys := [*(what.get("computed") or ()), *(what.get("traits") or ())]:
        return "trait " + sorted(keys)[0]
    if what.get("rebuilt"):
        return "rebuild"
    if what.get("identifiers") or what.get("removed"):
        return "identifier"
    return str(what.get("cause") or "change")


def _became_known(what: Mapping[str, Any]) -> bool:
    """A user_id, email or advertising id was added: the profile may now count as known."""
    return any(str(i).split(":", 1)[0] in KNOWN_KINDS for i in what.get("identifiers") or ())


def audiences_consume(rows: list[FeedRow]) -> None:
    """Re-evaluate the changed profiles against the audiences that depend on what changed
    (an index of event names and trait keys), in dependency order; move memberships of
    profiles merged away to their winner, and close those of deleted profiles.
    Idempotent: a change seen twice evaluates to the same members."""
    now = timezone.now()
    new_emails_deliver(rows)  # before the evaluation: an exit it causes comes after
    # Those being computed too: the full run holds the audience's lock, so an evaluation
    # here waits for it, then corrects what changed meanwhile.
    audiences = ordered(list(Audience.objects.filter(enabled=True).exclude(status=Audience.Status.FAILED)))
    if not audiences:
        return
    by_event: dict[str, list[str]] = defaultdict(list)
    by_trait: dict[str, list[str]] = defaultdict(list)
    for a in audiences:
        for name in (a.depends_on or {}).get("events", []):
            by_event[name].append(a.key)
        for key in (a.depends_on or {}).get("traits", []):
            by_trait[key].append(a.key)
    work: dict[str, dict[int, str]] = defaultdict(dict)
    full: set[str] = set()
    deleted: set[int] = set()
    merged: list[tuple[int, int]] = []
    for row in rows:
        what, pid = row.what, row.profile_id
        keys = [*(what.get("computed") or ()), *(what.get("traits") or ())]
        if what.get("all"):
            full.update(k for key in keys for k in by_trait.get(key, ()))
            continue
        if what.get("deleted"):
            deleted.add(pid)
            continue
        if (into := what.get("merged_into")) is not None:
            merged.append((pid, int(into)))
            continue
        for loser in what.get("merged") or ():
            merged.append((int(loser), pid))
        cause = _cause(what)
        if any(what.get(k) for k in _EVERYTHING):
            for a in audiences:
                work[a.key][pid] = cause
            continue
        for name in what.get("events") or {}:
            for key in by_event.get(name, ()):
                work[key].setdefault(pid, cause)
        for trait in keys:
            for key in by_trait.get(trait, ()):
                work[key].setdefault(pid, f"trait {trait}")
        if _became_known(what):  # who can be a member changed, for the audiences of known people
            for a in audiences:
                if not a.include_anonymous:
                    work[a.key].setdefault(pid, "identifier")
    if deleted:
        _leave(sorted(deleted), now, "deleted")
    for loser, winner in dict.fromkeys(merged):
        _transfer(loser, winner, now)
        for a in audiences:
            work[a.key].setdefault(winner, "merge")
    touched = sorted({pid for key, causes in work.items() if key not in full for pid in causes})
    with events_scoped(touched) as events:  # read once for every audience below
        for a in audiences:
            if a.key in full:
                enqueue_compute(audience_id=a.pk, cause="trait recomputed")
                continue
            causes = work.get(a.key, {})
            if not causes:
                continue
            applied = _evaluate(_live(a), sorted(causes), now, causes, events)
            for pid in {*applied.entered, *applied.exited}:
                for other in audiences:
                    if a.key in (other.depends_on or {}).get("audiences", []):
                        work[other.key].setdefault(pid, f"audience {a.key}")


def _leave(profile_ids: Sequence[int], now: datetime, cause: str) -> None:
    """Close every membership of these profiles (deleted), with an exit for each."""
    members = list(
        AudienceMember.objects.filter(profile_id__in=list(profile_ids)).values_list("audience_id", "profile_id")
    )
    by_audience: dict[int, list[int]] = defaultdict(list)
    for audience_id, pid in members:
        by_audience[audience_id].append(pid)
    for audience_id, pids in sorted(by_audience.items()):
        _lock(audience_id)
        _apply(audience_id, set(), pids, now, cause)
        _resize(audience_id, -len(pids))


def _transfer(loser: int, winner: int, now: datetime) -> None:
    """A profile merged away: its memberships close ("merged into …") and move to the
    winner when the winner is not a member already, keeping when the person entered. No
    entry or exit for the destinations: the same person stays in. The winner is then
    re-evaluated as a whole (a real exit if the merged person no longer qualifies)."""
    keys = dict(Profile.objects.filter(pk__in=[loser, winner]).values_list("pk", "key"))
    stays = list(AudienceMember.objects.filter(profile_id=loser).values_list("audience_id", "entered_at"))
    for audience_id, entered_at in sorted(stays):
        _lock(audience_id)
        AudienceMember.objects.filter(audience_id=audience_id, profile_id=loser).delete()
        Membership.objects.filter(audience_id=audience_id, profile_id=loser, exited_at__isnull=True).update(
            exited_at=now, exit_cause=f"merged into {keys.get(winner, winner)}"
        )
        if not AudienceMember.objects.filter(audience_id=audience_id, profile_id=winner).exists():
            AudienceMember.objects.create(audience_id=audience_id, profile_id=winner, entered_at=entered_at)
            Membership.objects.create(audience_id=audience_id, profile_id=winner, entered_at=now,
                                      entry_cause=f"merged from {keys.get(loser, loser)}")  # fmt: skip
        else:
            _resize(audience_id, -1)


# --- Preview -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Preview:
    size: int
    sample: list[str]  # profile keys (use_…)
    conditions: list[tuple[str, int]]  # (JSON path, how many profiles that node alone admits)


def audience_preview(*, data: Mapping[str, Any], now: datetime | None = None) -> Preview:
    """Size, a sample of 20 and each node's count for an unsaved rule or query, without
    writing anything. Raises `QueryError`."""
    now = now or timezone.now()
    unknown = sorted(set(data) - {"rule", "query", "include_anonymous", "key"})
    if unknown:
        raise QueryError(unknown[0], "Unknown field; a preview takes rule or query, and include_anonymous.")
    parsed = rule_from(data)
    root = "query" if parsed.query else "rule"
    ctx = _context(parsed.node, include_anonymous=_flag(data, "include_anonymous", False), path=root,
                   own_key=data.get("key") if isinstance(data.get("key"), str) else None)  # fmt: skip
    d = dialect_named(connection.vendor)
    nodes = rule_nodes(parsed.node, "$")
    with transaction.atomic():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute(f"SET LOCAL statement_timeout = {PREVIEW_STATEMENT_TIMEOUT_MS}")
                cursor.execute("SET LOCAL work_mem = '64MB'")
        with connection.cursor() as cursor:
            if d.name == "postgresql":
                one = preview_query([n for _, n in nodes], ctx, d, now=now)
                cursor.execute(one.text, one.params)
                row = cursor.fetchone()
                sizes, ids = [int(v or 0) for v in row[:-1]], list(row[-1] or [])
            else:
                counts = counts_query([n for _, n in nodes], ctx, d, now=now)
                sample = sample_query(parsed.node, ctx, d, now=now)
                cursor.execute(counts.text, counts.params)
                sizes = [int(v or 0) for v in cursor.fetchone() or ()]
                cursor.execute(sample.text, sample.params)
                ids = [row[0] for row in cursor.fetchall()]
    keys = dict(Profile.objects.filter(pk__in=ids).values_list("pk", "key"))
    return Preview(sizes[0] if sizes else 0, [keys[i] for i in ids if i in keys],
                   [(path, size) for (path, _), size in zip(nodes, sizes, strict=True)])  # fmt: skip
