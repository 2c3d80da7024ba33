"""Segment's audience query language, read into our audience rule tree and written back. Pure:
no database, no Django, no clock.

`parse_query(text)` reads a query, e.g.

    event('Email Opened').where(property('machine_open') != true).within(180 days).count() >= 1
    AND NOT event('Order Completed').within(180 days).count() >= 1

into the rule tree (the JSON an audience stores). It checks syntax only: whether the traits,
events and audiences named exist, and whether values suit their operators, is the rule
validator's business. `format_query(tree)` writes a tree as a query, or returns None when the
language has no form for it. For every tree `parse_query` returns, `parse_query(format_query(t))
== t`. Trees come out canonical: `all`/`any` hold two or more children and never one of their
own kind (`a AND (b AND c)` is one `all` of three); an event omits defaults (`where` and `then`
when empty, `window` for all time, `count` when it is `>= 1`); `format_query` also takes those
defaults spelled out, one-child junctions and junctions inside their own kind. A where lists its
filters before its funnel steps; each list keeps its order.

Grammar (keywords, function names and units in any case; strings in '…' or "…" with the escapes
\\\\ \\' \\" \\/ \\n \\t \\r \\b \\f \\uXXXX; numbers such as 7, -2, 1.5, 1e3; dates such as 2026-05-01 or
2026-05-01T10:00:00Z, read as strings):

    query      := or
    or         := and ("OR" and)*                 AND binds tighter than OR; both flatten
    and        := unary ("AND" unary)*
    unary      := "NOT" unary | "(" or ")" | event | trait | audience
    event      := "event(" STRING ")" ("." (where | window))* ".count()" count_cmp
    where      := "where(" ["{"] term ("AND" term)* ["}"] ")"     terms group with ( ); wheres add up
    term       := "property(" STRING ")" scalar_cmp               a filter; the path is dotted
                | "event(" STRING ")" … ".within(parent:" duration ")" … ".count()" (">= 1" | "= 0")
                                                                  a funnel step: "then", did / did not
    window     := "within(" duration ")" | "between(" duration "," duration ")"
    duration   := INTEGER ("day" | "days" | "hour" | "hours")    windows in whole days: 48 hours = 2 days
    count_cmp  := ("=" | "==" | ">" | ">=" | "<" | "<=") INTEGER | "." ("equals" | "greater_than"
                | "at_least" | "less_than" | "at_most") "(" INTEGER ")"        > N is >= N+1, < N is <= N-1
    trait      := "trait(" STRING ")" scalar_cmp
    audience   := "audience(" STRING ")" [("=" | "==" | "!=") ("true" | "false")]
    scalar_cmp := ("=" | "==" | "!=" | "<" | "<=" | ">" | ">=") literal       = null: not_exists, != null: exists
                | ".equals(" literal ")" | ".differs(" | ".greater_than(" | ".at_least(" | ".less_than(" | ".at_most("
                | ".exists()" | ".absent()"                                not_exists
                | ".contains(" STRING ("," STRING)* ")"                    several: an `any` (traits only)
                | ".omits(" STRING ")"                                     not_contains
                | ".starts_with(" STRING ")" | ".ends_with(" STRING ")"
                | ".one_of(" literal ("," literal)* ")" | ".none_of(" …
                | ".before_date(" (STRING | DATE) ")" | ".after_date(" …
                | ".within_last(" duration ")" | ".before_last(" duration ")"   within_last_days, before_last_days
    literal    := STRING | NUMBER | DATE | "true" | "false" | "null" | "literal(" literal ")"

`audience('key')` is our extension: Segment writes membership as `trait('key') = true` (an audience
is a trait of its members), which reads here as the trait condition it looks like. `audience('key')
= false` is {"member": false}; `NOT audience('key')` is {"not": …}, kept as written.

Segment's `!=` (`differs`) is false for a missing value; ours (`!=`) is "not =", true for a missing
one (see `profiles.query.filters`). The query is read as our operator.

Refused, each with the position and the reason: account audiences (`ANY`, `ALL`), `entity()`,
`context()`, `sources()`, `expires_after()`; reducers other than `count()` (`sum`, `avg`, `min`,
`max`, `mode`, `first`, `last`, `unique`: make a computed trait and compare `trait('key')`);
comparisons with `trait()`/`property()`/`property(parent: …)` (dynamic references); `count() !=`;
`count() < 0`; windows of hours that are not whole days; `within_next`, `after_next`; `OR` and
`NOT` inside a where; funnel steps inside funnel steps; property names with an escaped `\\.`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from string import hexdigits
from typing import Any

from profiles.query.filters import OPERATORS

__all__ = ["MAX_NESTING", "QueryParseError", "format_query", "parse_query"]

Node = dict[str, Any]
MAX_NESTING = 64  # NOTs and parentheses inside one another; far above any real audience, far below the stack
_ABSENT = object()  # the value of exists / not_exists: the key is left out
_SUGAR = {"=": "=", "==": "=", "!=": "!=", ">": ">", ">=": ">=", "<": "<", "<=": "<="}
_NAMED = {"equals": "=", "differs": "!=", "greater_than": ">", "at_least": ">=", "less_than": "<", "at_most": "<="}
_TEXT = {"contains": "contains", "omits": "not_contains", "starts_with": "starts_with", "ends_with": "ends_with"}
_TEXT_NAMES = {op: name for name, op in _TEXT.items()}
_RELATIVE = {"within_last": "within_last_days", "before_last": "before_last_days"}
_RELATIVE_NAMES = {op: name for name, op in _RELATIVE.items()}
_REDUCERS = ("sum", "avg", "min", "max", "mode", "first", "last", "unique")
_ESCAPES = {"\\": "\\", "'": "'", '"': '"', "/": "/", "n": "\n", "t": "\t", "r": "\r", "b": "\b", "f": "\f"}
_TOKEN = re.compile(
    r"(?P<space>\s+)"
    r"|(?P<date>\d{4}-\d{2}-\d{2}(?:T\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?)?)"
    r"|(?P<number>-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)"
    r"|(?P<name>[A-Za-z_]\w*)"
    r"|(?P<symbol>==|!=|>=|<=|[=<>(){}.,:])",
    re.ASCII,
)


class QueryParseError(ValueError):
    """A query that does not parse, or has no form in the rule tree: `position` is the 0-based
    character where it goes wrong, `message` says what was expected there."""

    def __init__(self, position: int, message: str) -> None:
        super().__init__(f"at {position}: {message}")
        self.position, self.message = position, message


@dataclass(frozen=True, slots=True)
class Token:
    kind: str  # "string" | "number" | "date" | "name" | "symbol" | "end"
    text: str  # as written
    value: Any  # a string's text, a number, or the source text
    pos: int

    @property
    def word(self) -> str:
        return self.text.lower() if self.kind == "name" else ""


def parse_query(text: str) -> Node:
    """The rule tree of a query; `QueryParseError` names the position and what was expected."""
    return _Parser(_lex(text)).query()


# --- lexing ---------------------------------------------------------------------------------


def _lex(text: str) -> list[Token]:
    tokens: list[Token] = []
    i = 0
    while i < len(text):
        if text[i] in "'\"":
            value, end = _string(text, i)
            tokens.append(Token("string", text[i:end], value, i))
            i = end
            continue
        m = _TOKEN.match(text, i)
        if m is None:
            raise QueryParseError(i, f"unexpected character {text[i]!r}")
        kind, raw = m.lastgroup or "", m.group()
        if kind == "number":
            tokens.append(Token(kind, raw, _number(raw, i), i))
        elif kind != "space":
            tokens.append(Token(kind, raw, raw, i))
        i = m.end()
    tokens.append(Token("end", "", None, len(text)))
    return tokens


def _number(raw: str, pos: int) -> int | float:
    try:
        n: int | float = int(raw) if raw.lstrip("-").isdigit() else float(raw)
    except ValueError:  # more digits than Python converts
        raise QueryParseError(pos, "number too long") from None
    if isinstance(n, float) and not math.isfinite(n):
        raise QueryParseError(pos, "number out of range")
    return n


def _string(text: str, start: int) -> tuple[str, int]:
    quote, i = text[start], start + 1
    out: list[str] = []
    while i < len(text):
        ch = text[i]
        if ch == quote:
            return "".join(out), i + 1
        if ch == "\\":
            nxt = text[i + 1 : i + 2]
            if nxt == "u":
                digits = text[i + 2 : i + 6]
                if len(digits) != 4 or not all(c in hexdigits for c in digits):
                    raise QueryParseError(i, "expected 4 hex digits after \\u")
                out.append(chr(int(digits, 16)))
                i += 6
                continue
            if nxt not in _ESCAPES:
                raise QueryParseError(i, f"unknown escape \\{nxt}" if nxt else "unterminated string")
            out.append(_ESCAPES[nxt])
            i += 2
            continue
        out.append(ch)
        i += 1
    raise QueryParseError(start, "unterminated string: no closing quote")


# --- parsing --------------------------------------------------------------------------------


def _junction(kind: str, items: list[Node]) -> Node:
    if len(items) == 1:
        return items[0]
    flat: list[Node] = []
    for item in items:
        flat.extend(item[kind] if set(item) == {kind} else [item])
    return {kind: flat}


def _condition(key: str, name: str, op: str, value: Any) -> Node:
    node: Node = {key: name, "op": op}
    if value is not _ABSENT:
        node["value"] = value
    return node


class _Parser:
    """Recursive descent over the tokens; `i` is the only state."""

    def __init__(self, tokens: list[Token]) -> None:
        self.tokens, self.i = tokens, 0

    @property
    def tok(self) -> Token:
        return self.tokens[self.i]

    def ahead(self, offset: int) -> Token:
        return self.tokens[min(self.i + offset, len(self.tokens) - 1)]

    def next(self) -> Token:
        t = self.tokens[self.i]
        if t.kind != "end":
            self.i += 1
        return t

    def at(self, symbol: str, offset: int = 0) -> bool:
        t = self.ahead(offset)
        return t.kind == "symbol" and t.text == symbol

    def expect(self, symbol: str, context: str) -> Token:
        if not self.at(symbol):
            raise self.error(f"expected {symbol!r} {context}")
        return self.next()

    def error(self, message: str, at: Token | None = None) -> QueryParseError:
        return QueryParseError((at or self.tok).pos, message)

    # boolean structure

    def query(self) -> Node:
        node = self.disjunction(0)
        if self.tok.kind != "end":
            raise self.error("expected AND, OR or the end of the query")
        return node

    def disjunction(self, depth: int) -> Node:
        items = [self.conjunction(depth)]
        while self.tok.word == "or":
            self.next()
            items.append(self.conjunction(depth))
        return _junction("any", items)

    def conjunction(self, depth: int) -> Node:
        items = [self.unary(depth)]
        while self.tok.word == "and":
            self.next()
            items.append(self.unary(depth))
        return _junction("all", items)

    def unary(self, depth: int) -> Node:
        if depth >= MAX_NESTING:
            raise self.error(f"nested more than {MAX_NESTING} deep")
        if self.tok.word == "not":
            self.next()
            return {"not": self.unary(depth + 1)}
        if self.at("("):
            self.next()
            node = self.disjunction(depth + 1)
            self.expect(")", "or AND or OR")
            return node
        return self.condition(depth)

    def condition(self, depth: int) -> Node:
        t, word = self.tok, self.tok.word
        if word == "event":
            return self.event(step=False, depth=depth)
        if word == "trait":
            return self.trait()
        if word == "audience":
            return self.audience()
        if word in ("any", "all"):
            raise self.error(f"{t.text} (an account audience over its users) is not supported: audiences are of users")
        if word == "property":
            raise self.error("property(…) is only valid inside where(…)")
        if word in ("entity", "context"):
            raise self.error(f"{word}(…) is not supported")
        if t.kind == "name" and self.at("(", 1) and word not in ("and", "or"):
            raise self.error(f"unknown function {t.text}(…); expected event(…), trait(…) or audience(…)")
        raise self.error("expected a condition: event(…), trait(…), audience(…), NOT or '('")

    def name_argument(self, what: str) -> str:
        fn = self.next()
        self.expect("(", f"after {fn.text}")
        if self.tok.word == "parent" and self.at(":", 1):
            raise self.error(f"{fn.word}(parent: …), a reference to the parent event, is not supported")
        if self.tok.kind != "string":
            raise self.error(f"expected the {what} (a quoted string)")
        name = str(self.next().value)
        self.expect(")", f"after the {what}")
        return name

    # events

    def event(self, *, step: bool, depth: int) -> Node:
        start = self.tok
        node: Node = {"event": self.name_argument("event name")}
        where: list[Node] = []
        then: list[Node] = []
        window: Node | None = None
        parent_hours: int | None = None
        while True:
            if not (self.at(".") and self.ahead(1).kind == "name"):
                raise self.error("expected .where(…), .within(…), .between(…) or .count() after the event")
            self.next()
            fn = self.tok
            if fn.word == "count":
                self.next()
                self.expect("(", "after count")
                self.expect(")", "after count(: count() takes no arguments")
                break
            if fn.word == "where":
                self.next()
                self.where_argument(where, then, steps=not step, depth=depth)
            elif fn.word in ("within", "between"):
                if window is not None or parent_hours is not None:
                    raise self.error("a second window: an event has one within(…) or between(…)")
                self.next()
                self.expect("(", f"after {fn.text}")
                if self.tok.word == "parent" and self.at(":", 1):
                    if fn.word == "between" or not step:
                        raise self.error(
                            "parent: is only for a funnel step (an event inside where(…)): within(parent: …)"
                        )
                    self.next()
                    self.next()
                    parent_hours = self.hours()
                elif step:
                    raise self.error("a funnel step's window is after its parent event: within(parent: N hours)")
                elif fn.word == "within":
                    window = {"within_days": self.days()}
                else:
                    first = self.days()
                    self.expect(",", "between the two durations of between(…)")
                    window = {"between_days": [first, self.days()]}
                self.expect(")", "after the duration")
            elif fn.word in _REDUCERS:
                raise self.error(f"{fn.word}(…) is a computed trait's reducer: an audience counts events with count() "
                                 "(make a computed trait and compare it with trait('key'))")  # fmt: skip
            elif fn.word in ("sources", "expires_after"):
                raise self.error(f"{fn.word}(…) is not supported")
            else:
                raise self.error(f"unknown function {fn.text}(…) on an event; expected where, within, between or count")
        op_tok = self.tok
        op, n = self.count_comparison()
        if where:
            node["where"] = where
        if step:
            if parent_hours is None:
                raise self.error("a funnel step (an event inside where(…)) needs .within(parent: N hours)", start)
            if (op, n) not in ((">=", 1), ("<=", 0), ("=", 0)):
                raise self.error("a funnel step is done (count() >= 1) or not done (count() = 0)", op_tok)
            return {**node, "within_hours": parent_hours, "did": op == ">="}
        if window is not None:
            node["window"] = window
        if (op, n) != (">=", 1):
            node["count"] = {"op": op, "value": n}
        if then:
            node["then"] = then
        return node

    def where_argument(self, where: list[Node], then: list[Node], *, steps: bool, depth: int) -> None:
        self.expect("(", "after where")
        braced = self.at("{")
        if braced:
            self.next()
        self.where_terms(where, then, steps=steps, depth=depth)
        if braced:
            self.expect("}", "or AND to close where({…")
        self.expect(")", "or AND after the where condition")

    def where_terms(self, where: list[Node], then: list[Node], *, steps: bool, depth: int) -> None:
        while True:
            self.where_term(where, then, steps=steps, depth=depth)
            if self.tok.word == "or":
                raise self.error("OR inside where(…) is not supported: all of a where's filters must hold "
                                 "(use one_of(…), or two event conditions joined by OR)")  # fmt: skip
            if self.tok.word != "and":
                return
            self.next()

    def where_term(self, where: list[Node], then: list[Node], *, steps: bool, depth: int) -> None:
        if depth >= MAX_NESTING:
            raise self.error(f"nested more than {MAX_NESTING} deep")
        word = self.tok.word
        if word == "not":
            raise self.error(
                "NOT inside where(…) is not supported; use a negative comparison (!=, omits, none_of, absent)"
            )
        if self.at("("):
            self.next()
            self.where_terms(where, then, steps=steps, depth=depth + 1)
            self.expect(")", "or AND")
        elif word == "property":
            where.append(self.property_filter())
        elif word == "event" and steps:
            then.append(self.event(step=True, depth=depth))
        elif word == "event":
            raise self.error("a funnel step cannot have steps of its own")
        elif word in ("trait", "context"):
            raise self.error(f"{word}(…) inside where(…) is not supported: a where filters the event's properties")
        else:
            raise self.error("expected property(…), or an event(…) as a funnel step, inside where(…)")

    def property_filter(self) -> Node:
        name_tok = self.ahead(2)
        path = self.name_argument("property name")
        if "\\." in path:
            raise self.error(
                "a property name with a literal '.' (\\.) is not supported: property paths are dotted", name_tok
            )
        (op, value), *more = self.scalar_comparison("property")
        if more:
            raise self.error("contains(…) with several values is an OR, which a where cannot hold", name_tok)
        return _condition("property", path, op, value)

    def count_comparison(self) -> tuple[str, int]:
        t, closing = self.tok, False
        if t.kind == "symbol" and t.text in _SUGAR:
            op = _SUGAR[self.next().text]
        elif self.at(".") and self.ahead(1).word in _NAMED:
            self.next()
            t = self.next()
            op = _NAMED[t.word]
            self.expect("(", "after the comparison's name")
            closing = True
        else:
            raise self.error("expected a comparison after count(), e.g. >= 1")
        v = self.tok
        if v.kind != "number" or not isinstance(v.value, int) or v.value < 0:
            raise self.error("expected a count: a whole number, 0 or more")
        self.next()
        if closing:
            self.expect(")", "after the count")
        n: int = v.value
        if op == "!=":
            raise self.error("count() != N has no form in an audience; write (… count() < N OR … count() > N)", t)
        if op == ">":
            return ">=", n + 1
        if op == "<":
            if n == 0:
                raise self.error("count() < 0 is never true", t)
            return "<=", n - 1
        return op, n

    def duration(self) -> tuple[int, bool, Token]:
        t = self.tok
        if t.kind != "number" or not isinstance(t.value, int) or t.value < 0:
            raise self.error("expected a duration: a whole number of hours or days, e.g. 7 days")
        self.next()
        unit = self.tok.word
        if unit not in ("day", "days", "hour", "hours"):
            raise self.error("expected hours or days after the number")
        self.next()
        return t.value, unit.startswith("day"), t

    def days(self) -> int:
        n, in_days, t = self.duration()
        if not in_days and n % 24:
            raise self.error(f"{n} hours is not a whole number of days; this window is in days", t)
        return n if in_days else n // 24

    def hours(self) -> int:
        n, in_days, _ = self.duration()
        return n * 24 if in_days else n

    # traits, audiences and comparisons

    def trait(self) -> Node:
        key = self.name_argument("trait key")
        nodes = [_condition("trait", key, op, value) for op, value in self.scalar_comparison("trait")]
        return _junction("any", nodes)

    def audience(self) -> Node:
        key = self.name_argument("audience key")
        member = True
        if self.tok.kind == "symbol" and self.tok.text in ("=", "==", "!="):
            equal = self.next().text != "!="
            if self.tok.word not in ("true", "false"):
                raise self.error("expected true or false: audience('key') = true is a member, = false is not")
            member = (self.next().word == "true") == equal
        return {"audience": key, "member": member}

    def scalar_comparison(self, subject: str) -> list[tuple[str, Any]]:
        t = self.tok
        if t.kind == "symbol" and t.text in _SUGAR:
            self.next()
            return [self.compare(_SUGAR[t.text], t, self.literal())]
        if not (self.at(".") and self.ahead(1).kind == "name"):
            raise self.error(f"expected a comparison after {subject}(…): = 'x', > 5, .exists(), .contains('x'), …")
        self.next()
        fn = self.next()
        word = fn.word
        self.expect("(", f"after {fn.text}")
        result: list[tuple[str, Any]]
        if word in _NAMED:
            result = [self.compare(_NAMED[word], fn, self.literal())]
        elif word in ("exists", "absent"):
            result = [("exists" if word == "exists" else "not_exists", _ABSENT)]
        elif word in _TEXT:
            values = self.arguments(self.string, several=word == "contains")
            result = [(_TEXT[word], v) for v in values]
        elif word in ("one_of", "none_of"):
            values = self.arguments(self.list_item, several=True)
            result = [(word, values)]
        elif word in ("before_date", "after_date"):
            if self.tok.kind not in ("string", "date"):
                raise self.error("expected a date: 2026-05-01, 2026-05-01T10:00:00Z or a quoted one")
            result = [(word, self.next().value)]
        elif word in _RELATIVE:
            result = [(_RELATIVE[word], self.days())]
        elif word in ("within_next", "after_next"):
            raise self.error(f"{word}(…) (dates in the future) is not supported", fn)
        else:
            raise self.error(f"unknown comparison {fn.text}(…)", fn)
        self.expect(")", f"after the argument of {word}(…)")
        return result

    def compare(self, op: str, t: Token, value: Any) -> tuple[str, Any]:
        if value is not None:
            return op, value
        if op in ("=", "!="):
            return ("not_exists" if op == "=" else "exists"), _ABSENT
        raise self.error("null compares only with = or != (or use .absent(), .exists())", t)

    def arguments(self, item: Any, *, several: bool) -> list[Any]:
        values = [item()]
        while self.at(","):
            if not several:
                raise self.error("expected ')': this comparison takes one value")
            self.next()
            values.append(item())
        return values

    def string(self) -> str:
        if self.tok.kind != "string":
            raise self.error("expected a quoted string")
        return str(self.next().value)

    def list_item(self) -> Any:
        t = self.tok
        value = self.literal()
        if value is None:
            raise self.error("null cannot be one of the values", t)
        return value

    def literal(self, *, nested: bool = False) -> Any:
        t = self.tok
        if t.kind in ("string", "number", "date"):
            return self.next().value
        if t.word in ("true", "false"):
            return self.next().word == "true"
        if t.word == "null":
            self.next()
            return None
        if t.word == "literal" and not nested and self.at("(", 1):
            self.next()
            self.next()
            value = self.literal(nested=True)
            self.expect(")", "after the literal")
            return value
        if t.word in ("trait", "property", "event", "context"):
            raise self.error(f"comparing with {t.word}(…) (a dynamic reference) is not supported; compare with a value")
        raise self.error("expected a value: a quoted string, a number, a date, true, false or null")


# --- formatting -----------------------------------------------------------------------------


class _Inexpressible(Exception):
    """The tree has no form in the query language (or is not a tree)."""


def format_query(tree: Mapping[str, Any]) -> str | None:
    """The query for a tree, canonical (parentheses only where needed); None when the language
    has no form for it, or it is not a rule tree. `parse_query` reads it back as the tree."""
    try:
        return _format(tree, 0, 0)
    except _Inexpressible:
        return None


def _format(node: Any, depth: int, level: int) -> str:
    """`depth` counts NOTs and parentheses as `parse_query` does; `level` every node, which keeps
    the recursion bounded (a parsed tree is at most about twice MAX_NESTING levels deep)."""
    if depth >= MAX_NESTING or level >= 3 * MAX_NESTING or not isinstance(node, Mapping):
        raise _Inexpressible
    keys = set(node)
    if keys in ({"all"}, {"any"}):
        kind = "all" if keys == {"all"} else "any"
        children = _items(node[kind])
        if not children:
            raise _Inexpressible
        if len(children) == 1:
            return _format(children[0], depth, level + 1)
        binding, word = (1, " AND ") if kind == "all" else (0, " OR ")
        return word.join(_operand(child, binding, depth, level + 1) for child in children)
    if keys == {"not"}:
        return "NOT " + _operand(node["not"], 2, depth + 1, level + 1)
    if "event" in keys:
        return _event(node)
    if "trait" in keys:
        return _comparison(node, "trait")
    if keys == {"audience", "member"} and isinstance(node["member"], bool):
        return f"audience({_quote(node['audience'])})" + ("" if node["member"] else " = false")
    raise _Inexpressible


def _operand(node: Any, binding: int, depth: int, level: int) -> str:
    """A junction's child or NOT's operand, in parentheses when it binds looser than `binding`."""
    if _binding(node) >= binding:
        return _format(node, depth, level)
    return f"({_format(node, depth + 1, level)})"


def _binding(node: Any) -> int:
    """How a node's text binds: 0 an OR, 1 an AND, 2 a NOT or a condition."""
    for _ in range(3 * MAX_NESTING):
        if not (isinstance(node, Mapping) and set(node) in ({"all"}, {"any"})):
            return 2
        kind = "all" if "all" in node else "any"
        children = node[kind]
        if not (isinstance(children, list | tuple) and len(children) == 1):
            return 1 if kind == "all" else 0
        node = children[0]
    raise _Inexpressible


def _items(value: Any) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list | tuple):
        raise _Inexpressible
    return list(value)


def _event(node: Mapping[str, Any]) -> str:
    if not set(node) <= {"event", "where", "count", "window", "then"}:
        raise _Inexpressible
    terms = [_comparison(f, "property") for f in _items(node.get("where"))]
    terms += [_step(step) for step in _items(node.get("then"))]
    where = f".where({' AND '.join(terms)})" if terms else ""
    count = node.get("count")
    if count is None:
        count = {"op": ">=", "value": 1}
    if not isinstance(count, Mapping) or set(count) != {"op", "value"} or count["op"] not in (">=", "=", "<="):
        raise _Inexpressible
    window = _window(node.get("window"))
    return f"event({_quote(node['event'])}){where}{window}.count() {count['op']} {_whole(count['value'])}"


def _window(window: Any) -> str:
    if window is None:
        return ""
    if isinstance(window, Mapping) and set(window) == {"within_days"}:
        return f".within({_days(window['within_days'])})"
    if isinstance(window, Mapping) and set(window) == {"between_days"}:
        bounds = _items(window["between_days"])
        if len(bounds) == 2:
            return f".between({_days(bounds[0])}, {_days(bounds[1])})"
    raise _Inexpressible


def _step(step: Any) -> str:
    if not isinstance(step, Mapping) or not {"event", "within_hours", "did"} <= set(step) <= {
        "event", "where", "within_hours", "did"
    } or not isinstance(step["did"], bool):  # fmt: skip
        raise _Inexpressible
    terms = [_comparison(f, "property") for f in _items(step.get("where"))]
    where = f".where({' AND '.join(terms)})" if terms else ""
    hours = _whole(step["within_hours"])
    duration = _days(hours // 24) if hours and not hours % 24 else f"{hours} hour{'' if hours == 1 else 's'}"
    count = ">= 1" if step["did"] else "= 0"
    return f"event({_quote(step['event'])}){where}.within(parent: {duration}).count() {count}"


def _comparison(node: Any, key: str) -> str:
    """A trait condition, or a property filter (`key` "property")."""
    if not isinstance(node, Mapping) or not {key, "op"} <= set(node) <= {key, "op", "value"}:
        raise _Inexpressible
    name, op, value = node[key], node["op"], node.get("value", _ABSENT)
    if op not in OPERATORS or (key == "property" and "\\." in str(name)):
        raise _Inexpressible
    subject = f"{key}({_quote(name)})"
    if op in ("exists", "not_exists"):
        if value is not _ABSENT and value is not None:
            raise _Inexpressible
        return subject + (".exists()" if op == "exists" else ".absent()")
    if op in _SUGAR:
        return f"{subject} {op} {_scalar(value)}"
    if op in ("one_of", "none_of"):
        values = _items(value) if value is not _ABSENT else []
        if not values:
            raise _Inexpressible
        return f"{subject}.{op}({', '.join(_scalar(v) for v in values)})"
    if op in _TEXT_NAMES:
        return f"{subject}.{_TEXT_NAMES[op]}({_quote(value)})"
    if op in _RELATIVE_NAMES:
        return f"{subject}.{_RELATIVE_NAMES[op]}({_days(value)})"
    return f"{subject}.{op}({_quote(value)})"  # before_date, after_date


def _whole(n: Any) -> int:
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise _Inexpressible
    return n


def _days(n: Any) -> str:
    return f"{_whole(n)} day{'' if n == 1 else 's'}"


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float) and math.isfinite(value):
        return repr(value)
    return _quote(value)


def _quote(text: Any) -> str:
    if not isinstance(text, str):
        raise _Inexpressible
    out = []
    for ch in text:
        code = ord(ch)
        if ch in "\\'":
            out.append("\\" + ch)
        elif ch in "\n\t\r\b\f":
            out.append({"\n": "\\n", "\t": "\\t", "\r": "\\r", "\b": "\\b", "\f": "\\f"}[ch])
        elif code < 0x20 or code == 0x7F or 0xD800 <= code <= 0xDFFF:
            out.append(f"\\u{code:04x}")
        else:
            out.append(ch)
    return "'" + "".join(out) + "'"
