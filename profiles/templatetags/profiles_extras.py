from __future__ import annotations

from django import template

register = template.Library()


@register.filter
def source_label(source_id: int | None, names: dict[int, str] | None) -> str:
    """`{{ source_id|source_label:source_names }}`: the source's name, or `#id`."""
    if source_id is None:
        return ""
    name = (names or {}).get(source_id)
    return f"{name} (#{source_id})" if name else f"source #{source_id}"
