"""Access tokens for the read APIs: created (shown once), checked, revoked."""

from __future__ import annotations

import hashlib
import secrets
import time
from datetime import timedelta
from typing import Any

from django.db import transaction
from django.utils import timezone

from audit.services import audit_record
from profiles.models import AccessToken
from profiles.selectors import columns_of, row_as_model

TOKEN_PREFIX = "cdp_pat_"
# last_used_at is for people ("is this token still in use?"), not an audit log: refreshing it at
# most once a minute keeps a token under load to one UPDATE a minute instead of one a request.
LAST_USED_RESOLUTION = timedelta(minutes=1)
# A live token found is kept in this process for this long, so a process answering a lookup
# per page view reads its token once a second instead of once a request (a SELECT and its
# round trip: ~12% of a /traits lookup's CPU). A revoke is therefore effective in every web
# process within this time, and at once in the process that made it.
CHECKED_TOKEN_SECONDS = 1.0
# Bounds the cache: a process sees a handful of live tokens; past this many it starts over.
CHECKED_TOKENS_MAX = 1000

# token hash -> (monotonic time it was read, the live token). Keyed by hash: the token itself
# is never kept. A dict's get and set are atomic, so gthread workers may share it.
_checked: dict[str, tuple[float, AccessToken]] = {}


def token_hash(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


def access_token_create(
    *, name: str, actor: Any = None, reason: str = "", can_write: bool = False
) -> tuple[AccessToken, str]:
    """Create a token; returns the row and the token itself, which is stored only as its
    SHA-256 and cannot be shown again. Audited when a person (`actor`) creates it. Raises
    ValueError for an empty name."""
    name = name.strip()
    if not name:
        raise ValueError("A token needs a name.")
    raw = TOKEN_PREFIX + secrets.token_urlsafe(32)
    user = actor if getattr(actor, "pk", None) else None
    with transaction.atomic():
        token = AccessToken.objects.create(
            name=name[:100],
            token_hash=token_hash(raw),
            prefix=raw[: len(TOKEN_PREFIX) + 4],
            created_by=user,
            can_write=can_write,
        )
        if user is not None:
            audit_record(actor=user, action="add", target=token, reason=reason.strip() or "created",
                         changes={"can_write": [None, can_write]})  # fmt: skip
    return token, raw


def access_token_revoke(*, token_id: int, actor: Any = None, reason: str = "") -> bool:
    """Revoke a token for good; idempotent. Returns whether it was live until now. A revoke
    by a person (`actor`) is audited with the reason."""
    with transaction.atomic():
        revoked = AccessToken.objects.filter(id=token_id, revoked_at__isnull=True).update(revoked_at=timezone.now())
        _checked.clear()  # this process stops accepting it at once (a rollback only costs a re-read)
        if revoked and getattr(actor, "pk", None):
            token = AccessToken.objects.get(id=token_id)
            audit_record(actor=actor, action="revoke", target=token, reason=reason.strip() or "revoked")
        return bool(revoked)


_LIVE_TOKEN_SQL = (
    f"SELECT {columns_of(AccessToken, 't')} FROM {AccessToken._meta.db_table} t "
    "WHERE t.token_hash = %s AND t.revoked_at IS NULL"
)


def access_token_check(*, raw: str) -> AccessToken | None:
    """The live token `raw` is, or None (unknown or revoked). A token found live is trusted
    for `CHECKED_TOKEN_SECONDS` in this process without reading it again, so a revoke made
    by another process takes effect here within that time. Refreshes last_used_at at most
    once a minute per process (one conditional UPDATE)."""
    if not raw.startswith(TOKEN_PREFIX) or len(raw) > 200:
        return None
    digest = token_hash(raw)
    checked = _checked.get(digest)
    clock = time.monotonic()
    if checked is not None and clock - checked[0] < CHECKED_TOKEN_SECONDS:
        token = checked[1]
    else:
        # Raw SQL: compiling the ORM query cost more than running it.
        found = row_as_model(AccessToken, _LIVE_TOKEN_SQL, [digest])
        if found is None:
            _checked.pop(digest, None)
            return None
        if len(_checked) >= CHECKED_TOKENS_MAX:
            _checked.clear()
        _checked[digest] = (clock, found)
        token = found
    now = timezone.now()
    if token.last_used_at is None or now - token.last_used_at > LAST_USED_RESOLUTION:
        AccessToken.objects.filter(id=token.id).update(last_used_at=now)
        token.last_used_at = now
    return token
