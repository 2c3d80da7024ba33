"""The event log and the people it belongs to.

`Event.source_id` is the id of an `ingest.Source` but deliberately not a foreign key:
profiles sits below ingest (docs/architecture.md) and must not depend on it.
"""

from __future__ import annotations

import secrets

from django.db import models
from django.db.models import Q

_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def new_profile_key() -> str:
    """A public id shaped like Segment's segment_id, e.g. `use_4paotyretuj4Ta2bEYQ0vKOq1e7`."""
    return "use_" + "".join(secrets.choice(_ALPHABET) for _ in range(27))


class Profile(models.Model):
    """One person. Identity resolution (a later issue) fills it; a merged-away profile
    stays as a tombstone pointing at the winner."""

    key = models.CharField(max_length=32, unique=True, default=new_profile_key, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    merged_into = models.ForeignKey("self", null=True, blank=True, on_delete=models.PROTECT, related_name="merged_from")

    def __str__(self) -> str:
        return self.key


class Event(models.Model):
    """One stored Segment message, as received and normalised. Never edited after the
    store except for `profile` and `processed_at`, which the pipeline sets."""

    class Type(models.TextChoices):
        IDENTIFY = "identify"
        TRACK = "track"
        PAGE = "page"
        SCREEN = "screen"
        GROUP = "group"
        ALIAS = "alias"

    id = models.BigAutoField(primary_key=True)
    source_id = models.PositiveIntegerField(help_text="The ingest.Source that received it.")
    message_id = models.CharField(max_length=100)
    type = models.CharField(max_length=8, choices=Type.choices)
    event = models.TextField(null=True, blank=True)
    name = models.TextField(null=True, blank=True)
    user_id = models.TextField(null=True, blank=True)
    anonymous_id = models.TextField(null=True, blank=True)
    group_id = models.TextField(null=True, blank=True)
    previous_id = models.TextField(null=True, blank=True)
    timestamp = models.DateTimeField(help_text="receivedAt - (sentAt - originalTimestamp)")
    original_timestamp = models.DateTimeField(null=True, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    received_at = models.DateTimeField()
    properties = models.JSONField(default=dict)
    traits = models.JSONField(default=dict)
    context = models.JSONField(default=dict)
    integrations = models.JSONField(default=dict)
    extra = models.JSONField(
        null=True, blank=True, help_text="Top-level fields outside the Segment spec, kept as sent."
    )
    profile = models.ForeignKey(Profile, null=True, blank=True, on_delete=models.SET_NULL, related_name="events")
    processed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["source_id", "message_id"], name="event_source_message_uniq"),
        ]
        indexes = [
            models.Index(fields=["profile", "-timestamp"], name="event_profile_timeline"),
            models.Index(fields=["event", "timestamp"], name="event_name_time"),
            models.Index(fields=["source_id", "-received_at"], name="event_source_recent"),
            models.Index(fields=["received_at"], condition=Q(processed_at__isnull=True), name="event_unprocessed"),
        ]

    def __str__(self) -> str:
        return f"{self.type} {self.event or self.name or ''} {self.message_id}".strip()
