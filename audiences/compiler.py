"""An audience rule as one set-based SQL query, pure: `rule → query` over the validated tree
and the definitions it references, with no database.

Shape: every leaf condition becomes a *set* of profile ids, written once as a common table
expression (`c0`, `c1`, …): the profiles with enough matching events, the funnel's
qualifying profiles, the computed trait's matching values, another audience's members. The
tree becomes a boolean expression over the profile row `p`, `p.id IN (SELECT id FROM cN)`
for a leaf, joined by AND, OR and NOT. Each set is computed once and probed by hash, so the
whole query is a few scans of the event log and one of the profiles, whatever the tree.

The same query answers the whole population or a given list of profiles (real time: each
set is then restricted to them, which keeps it to index lookups), and preview counts every
node in one pass. Custom traits are read off the profile row itself.

Members are live profiles (not merged away) and, unless the audience includes anonymous
people, those with a `user_id`, `email` or advertising id.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from audiences.rules import All, Any_, AudienceCondition, EventCondition, Node, Not, Step, TraitCondition
from profiles.query.dialects import Dialect
from profiles.query.events import EVENTS, event_match, event_time, events_of
from profiles.query.filters import _NEGATIVE, Filter, compile_filter
from profiles.query.sql import Sql, fmt, join, value

PROFILES = "profiles_profile"
IDENTITIES = "profiles_identity"
COMPUTED_VALUES = "profiles_computedtraitvalue"
MEMBERS = "audiences_audiencemember"
# Segment: without "include anonymous users", a member needs one of these.
KNOWN_KINDS = ("user_id", "email", "android.idfa", "ios.idfa")


@dataclass(frozen=True, slots=True)
class Context:
    """What the rule references, resolved: computed trait keys to their ids, audience keys
    to their ids. A trait key not computed is a custom trait (identify's, or a SQL trait's)."""

    computed: Mapping[str, int]
    audiences: Mapping[str, int]
    include_anonymous: bool = False


@dataclass(frozen=True, slots=True)
class Compiled:
    ctes: tuple[Sql, ...]  # "cN AS (SELECT … AS id …)"
    condition: Sql  # over the profile row `p`
    base: Sql  # who can be a member at all, over `p`

    def with_clause(self) -> Sql:
        if not self.ctes:
            return Sql("")
        return fmt("WITH {c} ", c=join(self.ctes, ", "))


class _Builder:
    def __init__(
        self, ctx: Context, d: Dialect, now: datetime, ids: Sequence[int] | None, events: str = EVENTS
    ) -> None:
        self.ctx, self.d, self.now, self.ids = ctx, d, now, ids
        # Where the conditions' events are read (funnel steps look theirs up in the log, by
        # its profile index): the log, or for a few profiles their events alone.
        self.events = events if ids is None else (events_of(d, events, ids) or events)
        self.ctes: list[Sql] = []
        self.seen: dict[tuple[str, str], str] = {}

    def set_of(self, select: Sql) -> Sql:
        """`p.id IN` the set `select` (its column `id`), written once however often used."""
        key = (select.text, repr(select.params))  # parameters may be lists: not hashable
        name = self.seen.get(key)
        if name is None:
            name = self.seen[key] = f"c{len(self.ctes)}"
            materialized = " MATERIALIZED" if self.d.name == "postgresql" else ""
            self.ctes.append(fmt(f"{name} AS{materialized} ({{s}})", s=select))
        return Sql(f"p.id IN (SELECT id FROM {name})")

    # --- nodes -----------------------------------------------------------------------------

    def node(self, node: Node) -> Sql:
        if isinstance(node, All):
            return join([self.node(n) for n in node.nodes], " AND ").wrap()
        if isinstance(node, Any_):
            return join([self.node(n) for n in node.nodes], " OR ").wrap()
        if isinstance(node, Not):
            return fmt("NOT {n}", n=self.node(node.node).wrap())
        if isinstance(node, TraitCondition):
            return self.trait(node)
        if isinstance(node, AudienceCondition):
            members = self.set_of(
                fmt(f"SELECT m.profile_id AS id FROM {MEMBERS} m WHERE m.audience_id = {{a}}{{r}}",
                    a=value(self.ctx.audiences[node.key]), r=self.restrict("m.profile_id"))
            )  # fmt: skip
            return members if node.member else fmt("NOT ({m})", m=members)
        return self.event(node)

    def restrict(self, column: str) -> Sql:
        return Sql("") if self.ids is None else fmt(" AND {r}", r=self.d.ids_in(column, self.ids))

    def trait(self, node: TraitCondition) -> Sql:
        trait_id = self.ctx.computed.get(node.key)
        if trait_id is None:  # a custom trait: on the profile row
            return compile_filter(node.filter, self.d.subject("p.traits", node.filter.path), self.d, now=self.now)
        # A computed value: the set of profiles whose value passes; a negative operator is
        # the complement of its positive (so a profile with no value passes `!=`).
        negative = node.filter.op in _NEGATIVE
        f = Filter(node.filter.path, _NEGATIVE[node.filter.op], node.filter.value) if negative else node.filter
        passes = compile_filter(f, self.d.subject("v.value", ()), self.d, now=self.now)
        matching = self.set_of(
            fmt(f"SELECT v.profile_id AS id FROM {COMPUTED_VALUES} v WHERE v.trait_id = {{t}} AND {{f}}{{r}}",
                t=value(trait_id), f=passes, r=self.restrict("v.profile_id"))
        )  # fmt: skip
        return fmt("NOT ({m})", m=matching) if negative else matching

    def event(self, node: EventCondition) -> Sql:
        """Profiles by how many qualifying instances of the event they have: `>= N` and
        `= N` (N ≥ 1) are the set itself; `<= N` and `= 0` are the complement of `> N`."""
        op, n = node.count_op, node.count
        if op == ">=" and n == 0:
            return Sql("(1 = 1)")  # everyone has at least none
        if op == "=" and n == 0:
            op, n = "<=", 0
        if op == "<=":
            return fmt("NOT ({s})", s=self.set_of(self.instances(node, ">", n)))
        return self.set_of(self.instances(node, op if op == "=" else ">=", n))

    def instances(self, node: EventCondition, op: str, n: int) -> Sql:
        where = [Sql("e.profile_id IS NOT NULL"), event_match(node.event, alias="e"), *self.filters(node.where, "e")]
        where += self.window(node)
        r = self.restrict("e.profile_id")
        if r.text and self.events == EVENTS:  # else the row source holds only theirs
            where.append(Sql(r.text[5:], r.params))
        if node.then:  # the chain nests: each step holds the next
            where.append(self.step(node.then[0], "e", "f0", node.then[1:]))
        body = join(where, " AND ")
        if (op, n) in ((">=", 1), (">", 0)):
            return fmt(f"SELECT DISTINCT e.profile_id AS id FROM {self.events} e WHERE {{w}}", w=body)
        return fmt(
            f"SELECT e.profile_id AS id FROM {self.events} e WHERE {{w}} GROUP BY e.profile_id "
            f"HAVING count(*) {op} {{n}}",
            w=body, n=value(n),
        )  # fmt: skip

    def step(self, step: Step, parent: str, alias: str, rest: Sequence[Step]) -> Sql:
        """EXISTS (or NOT EXISTS) a `step` event strictly after the parent's, within its
        hours, holding the rest of the chain. A parent younger than the hours does not yet
        qualify for `did: false`: the event may still come."""
        hours = step.within_hours
        after = self.after(f"{alias}.timestamp", f"{parent}.timestamp", hours)
        where = [fmt(f"{alias}.profile_id = {parent}.profile_id"), event_match(step.event, alias=alias),
                 *self.filters(step.where, alias), after]  # fmt: skip
        if rest:
            where.append(self.step(rest[0], alias, f"{alias}x", rest[1:]))
        exists = fmt(f"EXISTS (SELECT 1 FROM {EVENTS} {alias} WHERE {{w}})", w=join(where, " AND "))
        if step.did:
            return exists
        settled = fmt(f"{parent}.timestamp <= {{t}}", t=event_time(self.d, self.now - timedelta(hours=hours)))
        return fmt("(NOT {e} AND {s})", e=exists, s=settled)

    def after(self, child: str, parent: str, hours: float) -> Sql:
        if self.d.name == "postgresql":
            return fmt(f"{child} > {parent} AND {child} <= {parent} + {{h}} * interval '1 hour'", h=value(hours))
        return fmt(f"julianday({child}) > julianday({parent}) AND julianday({child}) <= julianday({parent}) + {{h}}",
                   h=value(hours / 24.0))  # fmt: skip

    def window(self, node: EventCondition) -> list[Sql]:
        if node.within_days is not None:
            return [fmt("e.timestamp >= {t}", t=event_time(self.d, self.now - timedelta(days=node.within_days)))]
        if node.between_days is not None:
            a, b = node.between_days
            return [fmt("e.timestamp >= {t}", t=event_time(self.d, self.now - timedelta(days=b))),
                    fmt("e.timestamp <= {t}", t=event_time(self.d, self.now - timedelta(days=a)))]  # fmt: skip
        return []

    def filters(self, filters: Sequence[Filter], alias: str) -> list[Sql]:
        return [compile_filter(f, self.d.subject(f"{alias}.properties", f.path), self.d, now=self.now) for f in filters]

    def base(self) -> Sql:
        parts = [Sql("p.merged_into_id IS NULL")]
        if self.ids is not None:
            parts.append(self.d.ids_in("p.id", self.ids))
        if not self.ctx.include_anonymous:
            # A correlated EXISTS, not a set written once: the planner may then hash the
            # known identities against the profiles (a semi-join) instead of looking each
            # of up to a million ids up.
            kinds = join([value(k) for k in KNOWN_KINDS], ", ")
            parts.append(fmt(f"EXISTS (SELECT 1 FROM {IDENTITIES} i WHERE i.profile_id = p.id AND i.kind IN ({{k}}))",
                             k=kinds))  # fmt: skip
        return join(parts, " AND ")


def compile_rule(
    node: Node,
    ctx: Context,
    d: Dialect,
    *,
    now: datetime,
    profile_ids: Sequence[int] | None = None,
    events: str = EVENTS,
) -> Compiled:
    """The rule's pieces at `now`, over everyone or only `profile_ids` (whose events may be
    read from `events`, a table holding at least theirs)."""
    b = _Builder(ctx, d, now, profile_ids, events)
    condition = b.node(node)
    base = b.base()
    return Compiled(tuple(b.ctes), condition, base)


def members_query(
    node: Node,
    ctx: Context,
    d: Dialect,
    *,
    now: datetime,
    profile_ids: Sequence[int] | None = None,
    events: str = EVENTS,
) -> Sql:
    """`SELECT id` of the members at `now` (of `profile_ids` only, if given)."""
    c = compile_rule(node, ctx, d, now=now, profile_ids=profile_ids, events=events)
    return fmt(f"{{w}}SELECT p.id FROM {PROFILES} p WHERE {{b}} AND {{c}}", w=c.with_clause(), b=c.base, c=c.condition)


def counts_query(nodes: Sequence[Node], ctx: Context, d: Dialect, *, now: datetime) -> Sql:
    """One row: how many profiles each node alone admits (out of those who can be members),
    in one pass over the profiles."""
    b = _Builder(ctx, d, now, None)
    conditions = [b.node(n) for n in nodes]
    base = b.base()
    sums = join([fmt("sum(CASE WHEN {c} THEN 1 ELSE 0 END)", c=c) for c in conditions], ", ")
    with_clause = Compiled(tuple(b.ctes), Sql(""), base).with_clause()
    return fmt(f"{{w}}SELECT {{s}} FROM {PROFILES} p WHERE {{b}}", w=with_clause, s=sums, b=base)


def preview_query(nodes: Sequence[Node], ctx: Context, d: Dialect, *, now: datetime, limit: int = 20) -> Sql:
    """PostgreSQL: one row, how many profiles each node alone admits, then an array of a
    sample of the members of the first node (the root), the most recently seen first: one
    pass over the sets and the profiles for both (`counts_query` and `sample_query` make
    two)."""
    b = _Builder(ctx, d, now, None)
    conditions = [b.node(n) for n in nodes]
    base = b.base()
    flags = join([fmt(f"{{c}} AS n{i}", c=c) for i, c in enumerate(conditions)], ", ")
    counts = join([Sql(f"count(*) FILTER (WHERE n{i})") for i in range(len(conditions))], ", ")
    ctes = [*b.ctes, fmt(f"judged AS MATERIALIZED (SELECT p.id, p.last_seen_at, {{f}} FROM {PROFILES} p WHERE {{b}})",
                         f=flags, b=base)]  # fmt: skip
    return fmt(
        "{w}SELECT {c}, ARRAY(SELECT id FROM judged WHERE n0 ORDER BY last_seen_at DESC NULLS LAST, id DESC "
        "LIMIT {n}) FROM judged",
        w=Compiled(tuple(ctes), Sql(""), base).with_clause(), c=counts, n=value(limit),
    )  # fmt: skip


def sample_query(node: Node, ctx: Context, d: Dialect, *, now: datetime, limit: int = 20) -> Sql:
    """A sample of members, the most recently seen first."""
    c = compile_rule(node, ctx, d, now=now)
    return fmt(
        f"{{w}}SELECT p.id FROM {PROFILES} p WHERE {{b}} AND {{c}} ORDER BY p.last_seen_at DESC, p.id DESC LIMIT {{n}}",
        w=c.with_clause(), b=c.base, c=c.condition, n=value(limit),
    )  # fmt: skip
