"""An audience's rule: its JSON tree parsed into frozen nodes, validated, pure.

    node      := {"all": [node, ...]} | {"any": [node, ...]} | {"not": node} | condition
    condition := event | trait | audience
    event     := {"event": NAME, "where": [filter, ...],
                  "count": {"op": ">=" | "=" | "<=", "value": N},          (default >= 1)
                  "window": {"within_days": N} | {"between_days": [A, B]} | null,   (null: all time)
                  "then": [{"event": NAME, "where": [...], "within_hours": H, "did": true | false}]}
    trait     := {"trait": KEY, "op": OP, "value": V}
    audience  := {"audience": KEY, "member": true | false}

Filters and operators are the query vocabulary's (`profiles.query.filters`), for event
properties and traits alike. Every error is a `QueryError` whose path is the JSON path of the
bad node (`$.all[1].where[0].op`). What a rule references (event names, trait keys,
audiences) and whether time alone can change its members is `rule_dependencies`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from profiles.query.filters import Filter, QueryError, filter_json, parse_filter

COUNT_OPS = (">=", "=", "<=")
MAX_DEPTH = 20
MAX_CONDITIONS = 100
# The operators whose truth moves with the clock.
_TIME_OPS = ("within_last_days", "before_last_days")


@dataclass(frozen=True, slots=True)
class Step:
    """A funnel step: an event within `within_hours` after the previous step's event (or,
    with `did=False`, no such event)."""

    event: str
    where: tuple[Filter, ...]
    within_hours: float
    did: bool


@dataclass(frozen=True, slots=True)
class EventCondition:
    event: str
    where: tuple[Filter, ...] = ()
    count_op: str = ">="
    count: int = 1
    within_days: float | None = None
    between_days: tuple[float, float] | None = None
    then: tuple[Step, ...] = ()


@dataclass(frozen=True, slots=True)
class TraitCondition:
    key: str
    filter: Filter


@dataclass(frozen=True, slots=True)
class AudienceCondition:
    key: str
    member: bool = True


@dataclass(frozen=True, slots=True)
class All:
    nodes: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class Any_:
    nodes: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class Not:
    node: Node


Condition = EventCondition | TraitCondition | AudienceCondition
Node = All | Any_ | Not | Condition


def _name(data: Mapping[str, Any], key: str, path: str, what: str) -> str:
    name = data.get(key)
    if not isinstance(name, str) or not name.strip():
        raise QueryError(f"{path}.{key}", f"{what} is required (a non-empty string).")
    if len(name) > 200:
        raise QueryError(f"{path}.{key}", f"{what} is at most 200 characters.")
    return name


def _number(v: Any, path: str, what: str, *, whole: bool = False, minimum: float = 0) -> float:
    if isinstance(v, bool) or not isinstance(v, int | float) or (whole and not float(v).is_integer()):
        raise QueryError(path, f"{what} must be {'a whole number' if whole else 'a number'}.")
    if v < minimum or v > 100_000:
        raise QueryError(path, f"{what} must be between {minimum:g} and 100000.")
    return v


def _only(data: Mapping[str, Any], allowed: set[str], path: str, shape: str) -> None:
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise QueryError(f"{path}.{unknown[0]}", f"Unknown field; {shape}.")


def _where(data: Any, path: str) -> tuple[Filter, ...]:
    if data is None:
        return ()
    if not isinstance(data, list):
        raise QueryError(path, "where is a list of filters.")
    return tuple(parse_filter(f, where=f"{path}[{i}]") for i, f in enumerate(data))


def _event(data: Mapping[str, Any], path: str) -> EventCondition:
    shape = "an event condition has event, where, count, window and then"
    _only(data, {"event", "where", "count", "window", "then"}, path, shape)
    name = _name(data, "event", path, "The event name")
    where = _where(data.get("where"), f"{path}.where")
    count_op, count = ">=", 1
    if (c := data.get("count")) is not None:
        if not isinstance(c, Mapping):
            raise QueryError(f"{path}.count", 'count is {"op": ">=" | "=" | "<=", "value": N}.')
        _only(c, {"op", "value"}, f"{path}.count", "count has op and value")
        if c.get("op") not in COUNT_OPS:
            raise QueryError(f"{path}.count.op", f"Unknown count operator {c.get('op')!r}; one of: >=, =, <=.")
        count_op, count = c["op"], int(_number(c.get("value"), f"{path}.count.value", "The count", whole=True))
    within = between = None
    if (w := data.get("window")) is not None:
        if not isinstance(w, Mapping) or len(w) != 1 or not ({"within_days", "between_days"} & set(w)):
            raise QueryError(f"{path}.window", 'window is {"within_days": N}, {"between_days": [A, B]} or null.')
        if "within_days" in w:
            within = _number(w["within_days"], f"{path}.window.within_days", "within_days", minimum=0.001)
        else:
            pair = w["between_days"]
            if not isinstance(pair, list) or len(pair) != 2:
                raise QueryError(f"{path}.window.between_days", "between_days is [A, B]: from A to B days ago.")
            a = _number(pair[0], f"{path}.window.between_days[0]", "A")
            b = _number(pair[1], f"{path}.window.between_days[1]", "B")
            if a >= b:
                raise QueryError(f"{path}.window.between_days", "between_days is [A, B] with A < B (days ago).")
            between = (a, b)
    steps: list[Step] = []
    then = data.get("then")
    if then is not None:
        if not isinstance(then, list) or not then:
            raise QueryError(f"{path}.then", "then is a non-empty list of funnel steps.")
        for i, step in enumerate(then):
            sp = f"{path}.then[{i}]"
            if not isinstance(step, Mapping):
                raise QueryError(sp, 'A step is {"event", "where", "within_hours", "did"}.')
            _only(step, {"event", "where", "within_hours", "did"}, sp, "a step has event, where, within_hours and did")
            did = step.get("did", True)
            if not isinstance(did, bool):
                raise QueryError(f"{sp}.did", "did is true or false.")
            if not did and i != len(then) - 1:
                raise QueryError(f"{sp}.did", "A step with did: false must be the funnel's last.")
            hours = _number(step.get("within_hours"), f"{sp}.within_hours", "within_hours", minimum=0.001)
            steps.append(Step(_name(step, "event", sp, "The event name"), _where(step.get("where"), f"{sp}.where"),
                              hours, did))  # fmt: skip
    return EventCondition(name, where, count_op, count, within, between, tuple(steps))


def _trait(data: Mapping[str, Any], path: str) -> TraitCondition:
    _only(data, {"trait", "op", "value"}, path, "a trait condition has trait, op and value")
    key = _name(data, "trait", path, "The trait key")
    f = parse_filter({"property": key, **{k: v for k, v in data.items() if k != "trait"}}, where=path)
    return TraitCondition(key, Filter((key,), f.op, f.value))


def _audience(data: Mapping[str, Any], path: str) -> AudienceCondition:
    _only(data, {"audience", "member"}, path, "an audience condition has audience and member")
    member = data.get("member", True)
    if not isinstance(member, bool):
        raise QueryError(f"{path}.member", "member is true or false.")
    return AudienceCondition(_name(data, "audience", path, "The audience key"), member)


def parse_rule(data: Any, *, path: str = "$") -> Node:
    """The rule tree from its JSON; `QueryError` names the bad node."""
    counter = [0]
    return _node(data, path, 0, counter)


def _node(data: Any, path: str, depth: int, counter: list[int]) -> Node:
    if depth > MAX_DEPTH:
        raise QueryError(path, f"A rule nests at most {MAX_DEPTH} levels.")
    if not isinstance(data, Mapping):
        raise QueryError(path, "A node is an object: all, any, not, or an event, trait or audience condition.")
    for group, cls in (("all", All), ("any", Any_)):
        if group in data:
            _only(data, {group}, path, f"a group has only {group}")
            items = data[group]
            if not isinstance(items, list) or not items:
                raise QueryError(f"{path}.{group}", f"{group} is a non-empty list of nodes.")
            return cls(tuple(_node(n, f"{path}.{group}[{i}]", depth + 1, counter) for i, n in enumerate(items)))
    if "not" in data:
        _only(data, {"not"}, path, "a not has only not")
        return Not(_node(data["not"], f"{path}.not", depth + 1, counter))
    counter[0] += 1
    if counter[0] > MAX_CONDITIONS:
        raise QueryError(path, f"A rule has at most {MAX_CONDITIONS} conditions.")
    if "event" in data:
        return _event(data, path)
    if "trait" in data:
        return _trait(data, path)
    if "audience" in data:
        return _audience(data, path)
    raise QueryError(path, "Unknown node: expected all, any, not, event, trait or audience.")


def rule_json(node: Node) -> dict[str, Any]:
    """The canonical JSON of a parsed tree (defaults omitted): what is stored."""
    if isinstance(node, All):
        return {"all": [rule_json(n) for n in node.nodes]}
    if isinstance(node, Any_):
        return {"any": [rule_json(n) for n in node.nodes]}
    if isinstance(node, Not):
        return {"not": rule_json(node.node)}
    if isinstance(node, TraitCondition):
        spec = filter_json(node.filter)
        spec.pop("property")
        return {"trait": node.key, **spec}
    if isinstance(node, AudienceCondition):
        return {"audience": node.key, "member": node.member}
    out: dict[str, Any] = {"event": node.event}
    if node.where:
        out["where"] = [filter_json(f) for f in node.where]
    if (node.count_op, node.count) != (">=", 1):
        out["count"] = {"op": node.count_op, "value": node.count}
    if node.within_days is not None:
        out["window"] = {"within_days": node.within_days}
    elif node.between_days is not None:
        out["window"] = {"between_days": list(node.between_days)}
    if node.then:
        out["then"] = [
            {"event": s.event, **({"where": [filter_json(f) for f in s.where]} if s.where else {}),
             "within_hours": s.within_hours, "did": s.did}
            for s in node.then
        ]  # fmt: skip
    return out


@dataclass(frozen=True, slots=True)
class Dependencies:
    events: frozenset[str] = frozenset()
    traits: frozenset[str] = frozenset()
    audiences: frozenset[str] = frozenset()
    time: bool = False  # members can change with no event: windows, funnels, relative dates


@dataclass
class _Deps:
    events: set[str] = field(default_factory=set)
    traits: set[str] = field(default_factory=set)
    audiences: set[str] = field(default_factory=set)
    time: bool = False


def rule_dependencies(node: Node) -> Dependencies:
    deps = _Deps()
    _collect(node, deps)
    return Dependencies(frozenset(deps.events), frozenset(deps.traits), frozenset(deps.audiences), deps.time)


def _timed(filters: Sequence[Filter]) -> bool:
    return any(f.op in _TIME_OPS for f in filters)


def _collect(node: Node, deps: _Deps) -> None:
    if isinstance(node, All | Any_):
        for n in node.nodes:
            _collect(n, deps)
    elif isinstance(node, Not):
        _collect(node.node, deps)
    elif isinstance(node, TraitCondition):
        deps.traits.add(node.key)
        deps.time |= node.filter.op in _TIME_OPS
    elif isinstance(node, AudienceCondition):
        deps.audiences.add(node.key)
    else:
        deps.events.add(node.event)
        deps.events.update(s.event for s in node.then)
        deps.time |= node.within_days is not None or node.between_days is not None or bool(node.then)
        deps.time |= _timed(node.where) or any(_timed(s.where) for s in node.then)


def rule_nodes(node: Node, path: str = "$") -> list[tuple[str, Node]]:
    """Every node with its JSON path, parents before children (what preview counts)."""
    out: list[tuple[str, Node]] = [(path, node)]
    if isinstance(node, All):
        for i, n in enumerate(node.nodes):
            out += rule_nodes(n, f"{path}.all[{i}]")
    elif isinstance(node, Any_):
        for i, n in enumerate(node.nodes):
            out += rule_nodes(n, f"{path}.any[{i}]")
    elif isinstance(node, Not):
        out += rule_nodes(node.node, f"{path}.not")
    return out
