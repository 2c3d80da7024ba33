"""SQL traits: definitions, every run with its report, and what the last runs sent per person."""

from __future__ import annotations

from django.conf import settings
from django.core.validators import RegexValidator
from django.db import models
from django.db.models import Q
from django.utils import timezone

from ingest.models import Source
from sqltraits.definitions import DEFAULT_EVERY_HOURS, IDENTIFIERS, KEY_RE, MAX_KEY


class SqlTrait(models.Model):
    """A query whose columns become traits of the people its identifier column names. Each
    definition owns a `Source` (kind `sql`): the identify calls it sends come from there.
    `key` never changes once created."""

    key = models.CharField(
        max_length=MAX_KEY, unique=True, validators=[RegexValidator(KEY_RE.pattern, "snake_case: a_key_like_this")]
    )
    name = models.CharField(max_length=200)
    query = models.TextField(help_text="One SELECT (or WITH … SELECT): a column naming the person, and 1 to 25 traits.")
    identifier = models.CharField(
        max_length=20, choices=[(i, i) for i in IDENTIFIERS], default="user_id",
        help_text="The column that names the person.",
    )  # fmt: skip
    every_hours = models.PositiveIntegerField(default=DEFAULT_EVERY_HOURS, help_text="Hours between scheduled runs.")
    enabled = models.BooleanField(default=True, help_text="Disabled: not run on the schedule (Run now still runs it).")
    source = models.OneToOneField(Source, on_delete=models.PROTECT, related_name="sql_trait")
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # The last finished run, kept here so that lists read one table.
    last_run_at = models.DateTimeField(null=True, blank=True)
    last_status = models.CharField(max_length=10, blank=True, default="")
    last_error = models.TextField(blank=True, default="")

    class Meta:
        ordering = ["key"]
        verbose_name = "SQL trait"
        permissions = [("run_sqltrait", "Can run a SQL trait now")]

    def __str__(self) -> str:
        return self.key


class SqlTraitRun(models.Model):
    """One run: queued, running, then succeeded or failed, with its counts, the skipped rows
    by reason (`skipped_reasons`: {reason: {count, message, examples}}) and any error. At most
    one run per definition is queued or running (a partial unique index)."""

    class Status(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        SUCCEEDED = "succeeded"
        FAILED = "failed"

    ACTIVE = (Status.QUEUED, Status.RUNNING)

    id = models.BigAutoField(primary_key=True)
    trait = models.ForeignKey(SqlTrait, on_delete=models.CASCADE, related_name="runs", db_index=False)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED)
    trigger = models.CharField(max_length=20, help_text="schedule, admin or api.")
    requested_by = models.CharField(max_length=150, blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    duration_ms = models.PositiveIntegerField(null=True, blank=True)
    rows = models.PositiveIntegerField(default=0, help_text="Rows the query returned.")
    people_sent = models.PositiveIntegerField(default=0, help_text="Identify calls sent: people whose values changed.")
    values_changed = models.PositiveIntegerField(default=0)
    people_nulled = models.PositiveIntegerField(default=0, help_text="People missing from the result: traits nulled.")
    skipped = models.PositiveIntegerField(default=0, help_text="Rows skipped (see the reasons).")
    skipped_reasons = models.JSONField(default=dict, blank=True)
    error = models.TextField(blank=True, default="")

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name = "SQL trait run"
        indexes = [models.Index(fields=["trait", "-created_at"], name="sqltrait_run_recent")]
        constraints = [
            models.UniqueConstraint(
                fields=["trait"], condition=Q(status__in=["queued", "running"]), name="sqltrait_one_active_run"
            )
        ]

    def __str__(self) -> str:
        return f"{self.trait_id} run {self.pk}: {self.status}"


class SqlTraitValue(models.Model):
    """What the runs sent for one person: the traits as last sent (so the next run sends only
    changes, and nulls the traits of someone missing from its result)."""

    id = models.BigAutoField(primary_key=True)
    trait = models.ForeignKey(SqlTrait, on_delete=models.CASCADE, related_name="values", db_index=False)
    identifier = models.CharField(max_length=500)
    values = models.JSONField()
    updated_at = models.DateTimeField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["trait", "identifier"], name="sqltrait_value_uniq")]

    def __str__(self) -> str:
        return f"{self.trait_id}:{self.identifier}"
