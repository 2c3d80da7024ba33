"""Opaque page cursors for event lists (pure). The Profile API, the REST API and the admin
timeline all page a profile's events by keyset on (timestamp, id); a cursor is that pair,
url-safe base64 so it can travel in a query string."""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from datetime import datetime


class BadCursor(ValueError):
    """A cursor that this server did not make."""


@dataclass(frozen=True)
class Cursor:
    timestamp: datetime
    id: int

    def encode(self) -> str:
        raw = f"{self.timestamp.isoformat()}|{self.id}".encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @classmethod
    def decode(cls, text: str) -> Cursor:
        try:
            raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode()
            stamp, _, ident = raw.partition("|")
            timestamp = datetime.fromisoformat(stamp)
            if timestamp.tzinfo is None:
                raise ValueError("naive timestamp")
            return cls(timestamp=timestamp, id=int(ident))
        except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
            raise BadCursor(f"invalid cursor: {text[:40]!r}") from exc
