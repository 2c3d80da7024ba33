"""Names of sources, for display. Sources belong to ingest (floor 4); profiles (floor 2) only
stores their ids, so ingest registers a lookup at startup (`IngestConfig.ready`) and pages
here ask through it. Without one registered, ids stand for themselves."""

from __future__ import annotations

from collections.abc import Callable, Iterable

SourceNamer = Callable[[set[int]], dict[int, str]]

_namer: SourceNamer | None = None


def source_namer_register(namer: SourceNamer) -> None:
    global _namer
    _namer = namer


def source_names(ids: Iterable[int | None]) -> dict[int, str]:
    """`{id: name}` for the given source ids (one query), leaving out unknown ones."""
    wanted = {i for i in ids if isinstance(i, int)}
    return _namer(wanted) if (_namer is not None and wanted) else {}
