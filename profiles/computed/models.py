"""Computed traits: definitions, their current values per profile, and every change of value.
Imported by `profiles.models`, so they are profiles' models."""

from __future__ import annotations

from django.conf import settings
from django.core.validators import RegexValidator
from django.db import models
from django.utils import timezone

from profiles.computed.definitions import KEY_RE, TYPES


class ComputedTrait(models.Model):
    """A computed trait or score. `spec` holds its definition's fields (event, property,
    where, window_days, min_frequency, rules, half_life_days) as `definition_parse` reads
    them; `key` never changes once created."""

    class Status(models.TextChoices):
        COMPUTING = "computing"
        LIVE = "live"
        FAILED = "failed"
        DISABLED = "disabled"

    key = models.CharField(
        max_length=64, unique=True, validators=[RegexValidator(KEY_RE.pattern, "snake_case: a_key_like_this")]
    )
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True, default="")
    type = models.CharField(max_length=20, choices=[(t, t) for t in TYPES])
    spec = models.JSONField(default=dict)
    schedule_hours = models.PositiveIntegerField(
        default=1, help_text="How often time-dependent values (windows, decay) are recomputed."
    )
    enabled = models.BooleanField(default=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.COMPUTING)
    last_error = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    last_computed_at = models.DateTimeField(null=True, blank=True, help_text="The last full or scheduled run.")
    last_duration_ms = models.PositiveIntegerField(null=True, blank=True)
    profiles_with_value = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["key"]

    def __str__(self) -> str:
        return self.key


class ComputedTraitValue(models.Model):
    """A profile's current value of a computed trait (no row: no value)."""

    # No database constraints here either: a full computation writes up to a value per
    # profile, and a checked foreign key costs a trigger per row (a third of the write).
    # Django deletes (and nulls) these with their trait.
    trait = models.ForeignKey(
        ComputedTrait, on_delete=models.CASCADE, related_name="values", db_index=False, db_constraint=False
    )
    # No database constraint, as for events: a profile deleted meanwhile leaves nothing to
    # check, and Django deletes these with it.
    profile = models.ForeignKey(
        "profiles.Profile", on_delete=models.CASCADE, related_name="computed_values", db_constraint=False
    )
    value = models.JSONField()
    computed_at = models.DateTimeField(help_text="When the value was last set.")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["trait", "profile"], name="computed_value_uniq")]

    def __str__(self) -> str:
        return f"{self.trait_id}:{self.profile_id}={self.value}"


class ComputedTraitChange(models.Model):
    """A value that changed: written with the change, kept `CDP_TRAIT_CHANGES_KEEP_DAYS`.
    What destinations deliver as identify calls."""

    id = models.BigAutoField(primary_key=True)
    profile_id = models.BigIntegerField()
    trait = models.ForeignKey(ComputedTrait, null=True, on_delete=models.SET_NULL, db_index=False, db_constraint=False)
    key = models.CharField(max_length=64)
    old = models.JSONField(null=True)
    new = models.JSONField(null=True)
    at = models.DateTimeField()

    class Meta:
        indexes = [
            models.Index(fields=["profile_id", "-at"], name="trait_change_profile"),
            models.Index(fields=["at"], name="trait_change_at"),
        ]

    def __str__(self) -> str:
        return f"{self.profile_id} {self.key}: {self.old} -> {self.new}"


class EventName(models.Model):
    """The event names seen, with how many events each: what the admin's forms offer. Kept
    current by the change feed's computed-traits consumer (off the ingest path)."""

    name = models.CharField(max_length=200, primary_key=True)
    count = models.BigIntegerField(default=0)
    last_seen_at = models.DateTimeField(null=True)

    def __str__(self) -> str:
        return self.name
