"""SQL trait definitions and the first check of a query. Pure: no database, no clock.

A definition is what the API and the admin send:

    {"key": "open_tickets", "name": "Open support tickets", "identifier": "user_id", "every_hours": 12,
     "query": "SELECT user_id, count(*) AS open_tickets FROM tickets WHERE status = 'open' GROUP BY user_id"}

`query_check` refuses up front what is plainly not one read: several statements, anything but
`SELECT` or `WITH`, words that write or lock, and the few functions whose effects a read-only
transaction does not stop (advisory locks, ending other sessions, settings). It reads the query
as PostgreSQL and SQLite tokenise it (strings, quoted names, comments and dollar quotes are
not words), but it is a first line only: the guard is the read-only connection the query runs
on (`sqltraits.warehouse`), which refuses any write whatever this check missed.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

KEY_RE = re.compile(r"^[a-z][a-z0-9]*(_[a-z0-9]+)*$")
MAX_KEY = 64
MAX_NAME = 200
MAX_QUERY = 20_000
IDENTIFIERS = ("user_id", "email", "anonymous_id")
DEFAULT_EVERY_HOURS = 12  # Segment's default: twice a day
MAX_EVERY_HOURS = 720
FIELDS = ("key", "name", "query", "identifier", "every_hours", "enabled")

# Inside one SELECT, what can write or lock: a data-modifying WITH (`WITH x AS (DELETE …)`),
# SELECT … INTO (a new table), and locking clauses (below). Statements such as DROP or CREATE
# are refused by the first word already.
_REFUSED_WORDS = frozenset({"insert", "update", "delete", "merge", "into"})
# Functions a READ ONLY transaction still runs: locks other work waits on, sessions ended,
# settings changed, files read, other databases reached.
_REFUSED_FUNCTION = re.compile(
    r"^(pg_(try_)?advisory\w*|pg_(terminate|cancel)_backend|pg_reload_conf|pg_rotate_logfile|set_config|"
    r"pg_notify|pg_read_(binary_)?file|pg_ls_\w+|pg_stat_file|lo_\w+|dblink\w*|pg_switch_wal|"
    r"pg_create_\w+|pg_drop_\w+|pg_logical_\w+|pg_replication_\w+|load_extension)$"
)
_LOCKING = re.compile(r"\bfor\s+(no\s+key\s+update|key\s+share|update|share)\b")


class DefinitionError(ValueError):
    """A bad field: `path` names it as a JSON path (`query`, `every_hours`), `message` says why."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path = path
        self.message = message


@dataclass(frozen=True, slots=True)
class Definition:
    key: str
    name: str
    query: str
    identifier: str
    every_hours: int
    enabled: bool


def key_check(value: Any) -> str:
    if not isinstance(value, str) or not KEY_RE.match(value) or len(value) > MAX_KEY:
        raise DefinitionError("key", f"snake_case, at most {MAX_KEY} characters (e.g. open_tickets).")
    return value


def definition_parse(data: Mapping[str, Any]) -> Definition:
    """A whole definition from its fields (defaults filled in). Raises `DefinitionError`."""
    key = key_check(data.get("key"))
    name = data.get("name")
    if name is None or name == "":
        name = key.replace("_", " ").capitalize()
    if not isinstance(name, str) or len(name) > MAX_NAME:
        raise DefinitionError("name", f"A name, at most {MAX_NAME} characters.")
    identifier = data.get("identifier", "user_id")
    if identifier not in IDENTIFIERS:
        raise DefinitionError("identifier", f"The column that names the person: one of {', '.join(IDENTIFIERS)}.")
    hours = data.get("every_hours", DEFAULT_EVERY_HOURS)
    if not isinstance(hours, int) or isinstance(hours, bool) or not 1 <= hours <= MAX_EVERY_HOURS:
        raise DefinitionError("every_hours", f"Hours between runs: a whole number from 1 to {MAX_EVERY_HOURS}.")
    enabled = data.get("enabled", True)
    if not isinstance(enabled, bool):
        raise DefinitionError("enabled", "true or false.")
    return Definition(key, name, query_check(data.get("query")), identifier, hours, enabled)


# --- The query --------------------------------------------------------------------------------

_TOKEN = re.compile(
    r"""
    (?P<space>\s+)
  | (?P<line_comment>--[^\n]*)
  | (?P<block_comment>/\*)
  | (?P<estring>[eE]'(?:[^'\\]|\\.|'')*')
  | (?P<string>'(?:[^']|'')*')
  | (?P<dollar>\$(?P<tag>[A-Za-z_][A-Za-z0-9_]*)?\$)
  | (?P<quoted>"(?:[^"]|"")*"|`(?:[^`]|``)*`|\[[^\]]*\])
  | (?P<word>[A-Za-z_][A-Za-z0-9_$]*)
  | (?P<semicolon>;)
  | (?P<other>[^'"`])
    """,
    re.VERBOSE | re.DOTALL,
)


def _tokens(query: str) -> list[tuple[str, str]]:
    """(kind, text) of each token that matters: words (lowercased), `(`, `;` and the rest.
    Comments, strings and quoted names are dropped. Raises `DefinitionError` on an
    unterminated comment, string or dollar quote."""
    out: list[tuple[str, str]] = []
    pos = 0
    while pos < len(query):
        match = _TOKEN.match(query, pos)
        if match is None:  # an opening quote with no end
            raise DefinitionError("query", "A string or quoted name is never closed.")
        kind = match.lastgroup if match.lastgroup != "tag" else "dollar"
        pos = match.end()
        if kind == "block_comment":
            pos = _block_comment_end(query, match.start())
        elif kind == "dollar":
            end = query.find(match.group(0), pos)
            if end < 0:
                raise DefinitionError("query", "A dollar-quoted string is never closed.")
            pos = end + len(match.group(0))
        elif kind == "word":
            out.append(("word", match.group(0).lower()))
        elif kind in ("semicolon", "other"):
            out.append((str(kind), match.group(0)))
    return out


def _block_comment_end(query: str, start: int) -> int:
    depth, pos = 0, start  # PostgreSQL nests /* */ comments
    while pos < len(query):
        if query.startswith("/*", pos):
            depth, pos = depth + 1, pos + 2
        elif query.startswith("*/", pos):
            depth, pos = depth - 1, pos + 2
            if depth == 0:
                return pos
        else:
            pos += 1
    raise DefinitionError("query", "A /* comment */ is never closed.")


def query_check(query: Any) -> str:
    """The query, trailing semicolons and space removed, if it reads as one SELECT (or WITH …
    SELECT) that writes and locks nothing. Raises `DefinitionError` saying what was refused."""
    if not isinstance(query, str) or not query.strip():
        raise DefinitionError("query", "A SELECT query.")
    if len(query) > MAX_QUERY:
        raise DefinitionError("query", f"At most {MAX_QUERY} characters.")
    if "\x00" in query:
        raise DefinitionError("query", "The query contains a NUL character.")
    tokens = _tokens(query)
    while tokens and tokens[-1][0] == "semicolon":
        tokens.pop()
    if not tokens:
        raise DefinitionError("query", "A SELECT query.")
    if any(kind == "semicolon" for kind, _ in tokens):
        raise DefinitionError("query", "One statement only: the query holds several (a `;` between statements).")
    first = next((text for kind, text in tokens if text != "("), "")
    if first not in ("select", "with"):
        shown = first.upper() or "this"
        raise DefinitionError("query", f"A SQL trait only reads: a SELECT (or WITH … SELECT) is run, not {shown}.")
    words = [text for kind, text in tokens if kind == "word"]
    if _LOCKING.search(" ".join(words)):
        raise DefinitionError("query", "A SQL trait only reads: a locking clause (FOR UPDATE, FOR SHARE) is refused.")
    if refused := sorted(set(words) & _REFUSED_WORDS):
        raise DefinitionError("query", f"A SQL trait only reads: {', '.join(w.upper() for w in refused)} is refused.")
    for i, (kind, text) in enumerate(tokens[:-1]):
        if kind == "word" and tokens[i + 1][1] == "(" and _REFUSED_FUNCTION.match(text):
            raise DefinitionError("query", f"The function {text}() is refused: it acts beyond reading.")
    return query.strip().rstrip(";").rstrip()
