"""Audiences (floor 3): definitions and their versions, current members, the history of
membership as intervals, and every entry and exit for the destinations."""

from __future__ import annotations

from django.conf import settings
from django.core.validators import RegexValidator
from django.db import models
from django.utils import timezone

KEY_PATTERN = r"^[a-z][a-z0-9]*(_[a-z0-9]+)*$"


class Audience(models.Model):
    """An audience: a rule (the JSON tree, or parsed from Segment's query language), kept
    current in real time and recomputed as time passes. `key` never changes once created."""

    class Status(models.TextChoices):
        PREPARING = "preparing"
        COMPUTING = "computing"
        LIVE = "live"
        FAILED = "failed"
        DISABLED = "disabled"

    key = models.CharField(
        max_length=64, unique=True, validators=[RegexValidator(KEY_PATTERN, "snake_case: a_key_like_this")]
    )
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True, default="")
    rule = models.JSONField(help_text="The rule tree (canonical JSON).")
    query = models.TextField(blank=True, default="", help_text="The query it was written in, if any.")
    include_anonymous = models.BooleanField(
        default=False, help_text="Off: a member needs a user_id, an email or an advertising id."
    )
    enabled = models.BooleanField(default=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PREPARING)
    last_error = models.TextField(blank=True, default="")
    version = models.PositiveIntegerField(default=1)
    schedule_minutes = models.PositiveIntegerField(
        default=15, help_text="How often an audience that time alone can change is recomputed."
    )
    time_dependent = models.BooleanField(default=False, help_text="Windows, funnels or relative dates.")
    depends_on = models.JSONField(default=dict, help_text="Event names, trait keys and audience keys it reads.")
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")  # fmt: skip
    last_computed_at = models.DateTimeField(null=True, blank=True)
    last_duration_ms = models.PositiveIntegerField(null=True, blank=True)
    size = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["key"]
        permissions = [("compute_audience", "Can start an audience's computation")]

    def __str__(self) -> str:
        return self.key

    @property
    def audit_label(self) -> str:
        return f"audience {self.key}"


class AudienceVersion(models.Model):
    """Every rule an audience has had, with who made it and when."""

    audience = models.ForeignKey(Audience, on_delete=models.CASCADE, related_name="versions")
    version = models.PositiveIntegerField()
    rule = models.JSONField()
    query = models.TextField(blank=True, default="")
    author = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                               related_name="+")  # fmt: skip
    author_name = models.CharField(max_length=200, blank=True, default="", help_text="A token's name, or the user's.")
    created_at = models.DateTimeField(default=timezone.now)
    reason = models.TextField(blank=True, default="")

    class Meta:
        ordering = ["audience", "-version"]
        constraints = [models.UniqueConstraint(fields=["audience", "version"], name="audience_version_uniq")]

    def __str__(self) -> str:
        return f"{self.audience_id} v{self.version}"


class AudienceMember(models.Model):
    """A current member. `profile_id` is not a foreign key (as in the event log): the floor
    below may delete a profile, and the feed then says so."""

    id = models.BigAutoField(primary_key=True)
    audience = models.ForeignKey(Audience, on_delete=models.CASCADE, related_name="members", db_index=False)
    profile_id = models.BigIntegerField()
    entered_at = models.DateTimeField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["audience", "profile_id"], name="audience_member_uniq")]
        indexes = [models.Index(fields=["profile_id"], name="audience_member_profile")]

    def __str__(self) -> str:
        return f"profile {self.profile_id} in {self.audience_id}"


class Membership(models.Model):
    """One stay in an audience: entered, exited (null: still in), and why each happened.
    Who was in on day X: entered_at <= X < exited_at (or still in)."""

    id = models.BigAutoField(primary_key=True)
    audience = models.ForeignKey(Audience, on_delete=models.CASCADE, related_name="history", db_index=False)
    profile_id = models.BigIntegerField()
    entered_at = models.DateTimeField()
    exited_at = models.DateTimeField(null=True, blank=True)
    entry_cause = models.CharField(max_length=200)
    exit_cause = models.CharField(max_length=200, blank=True, default="")

    class Meta:
        indexes = [
            models.Index(fields=["audience", "entered_at"], name="membership_audience_entered"),
            models.Index(fields=["audience", "exited_at"], name="membership_audience_exited",
                         condition=models.Q(exited_at__isnull=False)),
            models.Index(fields=["audience", "profile_id"], name="membership_open",
                         condition=models.Q(exited_at__isnull=True)),
        ]  # fmt: skip

    def __str__(self) -> str:
        return f"profile {self.profile_id} in {self.audience_id} from {self.entered_at}"


class AudienceChange(models.Model):
    """An entry or exit, written in the transaction that changes the membership: what the
    destinations deliver (`Audience Entered` / `Audience Exited`, and the trait). A merge
    that moves a membership to the person's surviving profile is no entry."""

    id = models.BigAutoField(primary_key=True)
    audience = models.ForeignKey(Audience, on_delete=models.CASCADE, related_name="changes", db_index=False)
    profile_id = models.BigIntegerField()
    entered = models.BooleanField()
    at = models.DateTimeField()
    cause = models.CharField(max_length=200)

    class Meta:
        indexes = [models.Index(fields=["audience", "id"], name="audience_change_recent")]

    def __str__(self) -> str:
        return f"profile {self.profile_id} {'entered' if self.entered else 'exited'} {self.audience_id}"
