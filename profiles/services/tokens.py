"""Access tokens for the read APIs: created (shown once), checked, revoked."""

from __future__ import annotations

import hashlib
import secrets
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
        if revoked and getattr(actor, "pk", None):
            token = AccessToken.objects.get(id=token_id)
            audit_record(actor=actor, action="revoke", target=token, reason=reason.strip() or "revoked")
        return bool(revoked)


_LIVE_TOKEN_SQL = (
    f"SELECT {columns_of(AccessToken, 't')} FROM {AccessToken._meta.db_table} t "
    "WHERE t.token_hash = %s AND t.revoked_at IS NULL"
)


def access_token_check(*, raw: str) -> AccessToken | None:
    """The live token `raw` is, or None (unknown or revoked). Refreshes last_used_at at most
    once a minute (one conditional UPDATE)."""
    if not raw.startswith(TOKEN_PREFIX) or len(raw) > 200:
        return None
    # Raw SQL: it runs on every API request, and compiling the ORM query cost more than
    # running it.
    token = row_as_model(AccessToken, _LIVE_TOKEN_SQL, [token_hash(raw)])
    if token is None:
        return None
    now = timezone.now()
    if token.last_used_at is None or now - token.last_used_at > LAST_USED_RESOLUTION:
        AccessToken.objects.filter(id=token.id).update(last_used_at=now)
        token.last_used_at = now
    return token
