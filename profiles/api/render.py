"""JSON as DRF's JSONRenderer writes it, by orjson: the read APIs' renderer."""

from __future__ import annotations

import json
from typing import Any

import orjson
from rest_framework.renderers import JSONRenderer
from rest_framework.utils.encoders import JSONEncoder

# Datetimes go to DRF's encoder (milliseconds and `Z`), as does anything else orjson does not
# write itself (a Decimal, a lazy string); keys that are not strings become strings, as json's.
_OPTIONS = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_NON_STR_KEYS
_DRF_DEFAULT = JSONEncoder().default


def json_bytes(data: Any) -> bytes:
    """`data` as DRF's JSONRenderer writes it (compact, UTF-8, U+2028 and U+2029 escaped as a
    strict JavaScript subset), by orjson: several times faster than `json.dumps` with DRF's
    encoder. An integer past 64 bits (a trait may hold one) takes json's way."""
    try:
        out = orjson.dumps(data, default=_DRF_DEFAULT, option=_OPTIONS)
    except orjson.JSONEncodeError:
        text = json.dumps(data, cls=JSONEncoder, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
        out = text.encode()
    if b"\xe2\x80\xa8" in out or b"\xe2\x80\xa9" in out:
        out = out.replace(b"\xe2\x80\xa8", b"\\u2028").replace(b"\xe2\x80\xa9", b"\\u2029")
    return out


class OrjsonRenderer(JSONRenderer):
    """DRF's JSONRenderer by `json_bytes`; indented output (`Accept: application/json;
    indent=4`) is left to DRF's."""

    def render(self, data: Any, accepted_media_type: str | None = None, renderer_context: Any = None) -> bytes:
        if data is None:
            return b""
        if self.get_indent(accepted_media_type, renderer_context or {}) is not None:
            return super().render(data, accepted_media_type, renderer_context)
        return json_bytes(data)
