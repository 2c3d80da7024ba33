"""Writing the audit log. Callers run it inside the transaction of the change it records."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.db import models

from audit.models import AuditEntry

# What a secret field's value is recorded as: that it changed, never what it is.
SECRET = "(secret)"


def target_type(model: type[models.Model] | models.Model) -> str:
    return f"{model._meta.app_label}.{model._meta.model_name}"


def audit_record(
    *,
    actor: Any,
    action: str,
    target: models.Model,
    reason: str,
    changes: Mapping[str, Any] | None = None,
    target_id: Any = None,
) -> AuditEntry:
    """Record that `actor` did `action` to `target`, and why. The actor is a user, or
    anything with an `audit_label` (an API access token: it is named, not linked).
    `target_id` overrides the target's pk (a deleted row no longer has one)."""
    user = actor if getattr(actor, "pk", None) and hasattr(actor, "get_username") else None
    label = user.get_username() if user else str(getattr(actor, "audit_label", "") or "")
    pk = target_id if target_id is not None else target.pk
    return AuditEntry.objects.create(
        actor=user,
        actor_name=label[:150],
        action=action[:40],
        target_type=target_type(target),
        target_id="" if pk is None else str(pk)[:64],
        target_repr=str(target)[:200],
        reason=reason.strip(),
        changes=dict(changes or {}),
    )


def plain(value: Any) -> Any:
    """A value as the log keeps it: JSON's own types stay, anything else is its text."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, models.Model):
        return str(value)
    return str(value)


def audited(actor: Any) -> bool:
    """Whether a change by `actor` is recorded: a person, or an API token (not the system)."""
    return bool(getattr(actor, "pk", None))
