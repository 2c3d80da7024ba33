"""Reading a page as its reader does, without an HTML library: the text inside an element,
found by a class or an attribute, and the form fields a page offers."""

from __future__ import annotations

import re
from html import unescape
from html.parser import HTMLParser

VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}


class _Find(HTMLParser):
    def __init__(self, match: dict[str, str]) -> None:
        super().__init__(convert_charrefs=True)
        self.match, self.depth, self.found, self.parts = match, 0, [], []

    def _matches(self, attrs: dict[str, str | None]) -> bool:
        for name, wanted in self.match.items():
            have = attrs.get(name) or ""
            if name == "class" and wanted not in have.split():
                return False
            if name != "class" and have != wanted:
                return False
        return True

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if self.depth:
            if tag not in VOID:
                self.depth += 1
            self.parts.append(" ")
        elif self._matches(dict(attrs)) and tag not in VOID:
            self.depth = 1

    def handle_endtag(self, tag: str) -> None:
        if self.depth:
            self.depth -= 1
            self.parts.append(" ")
            if not self.depth:
                self.found.append(" ".join("".join(self.parts).split()))
                self.parts = []

    def handle_data(self, data: str) -> None:
        if self.depth:
            self.parts.append(data)


def texts(html: str, **match: str) -> list[str]:
    """The text of every element matching all of `match` (`cls="x"` for a class, else an
    attribute: `id="y"`, `data_key="z"` for data-key)."""
    wanted = {("class" if k == "cls" else k.replace("_", "-")): v for k, v in match.items()}
    finder = _Find(wanted)
    finder.feed(html)
    return finder.found


def text_of(html: str, **match: str) -> str:
    found = texts(html, **match)
    assert found, f"nothing matches {match}"
    return found[0]


def page_text(html: str) -> str:
    return " ".join(unescape(re.sub(r"<[^>]+>", " ", html)).split())


def input_names(html: str) -> set[str]:
    """The names of the fields a page sends (outside <template>s)."""
    html = re.sub(r"<template.*?</template>", "", html, flags=re.S)
    return set(re.findall(r'<(?:input|select|textarea)[^>]*\sname="([^"]+)"', html))
