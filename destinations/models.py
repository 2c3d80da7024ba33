"""Destinations (floor 1): where Segment-format messages go, the outbox of what each one is
owed (`Delivery`), per-day counts kept after pruning, and full syncs with their progress.
It knows nothing of profiles or audiences: a delivery names its person by an opaque key
(for the order it keeps) and its subject by a key (the audience's, the trait's)."""

from __future__ import annotations

from django.db import models
from django.utils import timezone


class Destination(models.Model):
    """A tool that receives messages: a webhook, a Mailjet account, a Mailchimp audience.
    `settings` holds its secrets (never shown back, never logged)."""

    class Kind(models.TextChoices):
        WEBHOOK = "webhook", "Webhook"
        MAILJET = "mailjet", "Mailjet"
        MAILCHIMP = "mailchimp", "Mailchimp"

    name = models.CharField(max_length=100, unique=True)
    kind = models.CharField(max_length=10, choices=Kind.choices)
    enabled = models.BooleanField(default=True)
    audiences = models.JSONField(default=list, blank=True, help_text='Audience keys, or "all".')
    traits = models.JSONField(default=list, blank=True, help_text='Computed trait keys, or "all".')
    events = models.JSONField(default=dict, blank=True, help_text='Webhooks: {"sources": [ids], "names": [...]}.')
    consent_categories = models.JSONField(default=list, blank=True)
    settings = models.JSONField(default=dict, blank=True)
    # What the adapter learnt and keeps (Mailjet: the contact properties it created).
    state = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)
    # One drain at a time per destination: whoever holds an unexpired lease.
    lease_until = models.DateTimeField(null=True, blank=True)
    lease_owner = models.CharField(max_length=32, blank=True, default="")
    # After a transient failure the whole destination waits (a 429 or an outage is the
    # destination's, not one message's): no drain before this.
    paused_until = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True, default="")
    last_error_at = models.DateTimeField(null=True, blank=True)
    last_delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["name"]
        permissions = [("replay_delivery", "Can replay a destination's failed deliveries")]

    def __str__(self) -> str:
        return self.name

    @property
    def audit_label(self) -> str:
        return f"destination {self.name}"


class Delivery(models.Model):
    """One message owed to one destination, written in the transaction of the change that
    caused it. It ends delivered, discarded (a 4xx, with the reason and the response),
    filtered (consent, the integrations object, not subscribed) or dead (retried past the
    window); replaying puts it back to pending with its `message_id` unchanged."""

    class Status(models.TextChoices):
        PENDING = "pending"
        DELIVERED = "delivered"
        DISCARDED = "discarded"
        FILTERED = "filtered"
        DEAD = "dead"

    class Kind(models.TextChoices):
        AUDIENCE = "audience"
        TRAIT = "trait"
        EVENT = "event"
        SYNC = "sync"
        TEST = "test"

    id = models.BigAutoField(primary_key=True)
    destination = models.ForeignKey(Destination, on_delete=models.CASCADE, related_name="deliveries", db_index=False)
    person = models.CharField(max_length=200, help_text="Order is kept per destination and person.")
    kind = models.CharField(max_length=10, choices=Kind.choices)
    subject = models.CharField(max_length=200, blank=True, default="", help_text="The audience or trait key.")
    message_id = models.CharField(max_length=200)
    message = models.JSONField()
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    reason = models.TextField(blank=True, default="")
    attempts = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(default=timezone.now)
    next_attempt_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField(help_text="Retried until then; dead after.")
    finished_at = models.DateTimeField(null=True, blank=True)
    status_code = models.PositiveIntegerField(null=True, blank=True)
    request = models.TextField(blank=True, default="", help_text="The last request, trimmed, secrets left out.")
    response = models.TextField(blank=True, default="", help_text="The last response, trimmed.")
    notes = models.JSONField(default=dict, blank=True, help_text="E.g. the properties Mailjet could not take.")

    class Meta:
        constraints = [
            # The same message is owed to a destination once: enqueuing it again is a no-op.
            models.UniqueConstraint(fields=["destination", "message_id"], name="delivery_message_uniq"),
        ]
        indexes = [
            # The drain: a destination's pending rows that are due, oldest first.
            models.Index(fields=["destination", "next_attempt_at", "id"], name="delivery_due",
                         condition=models.Q(status="pending")),
            # Order per person: an earlier pending row of the same person holds the later ones.
            models.Index(fields=["destination", "person", "id"], name="delivery_person_pending",
                         condition=models.Q(status="pending")),
            # The delivery log, newest first, filtered by status; pruning by age.
            models.Index(fields=["destination", "status", "-id"], name="delivery_log"),
            models.Index(fields=["created_at"], name="delivery_created"),
        ]  # fmt: skip

    def __str__(self) -> str:
        return f"{self.kind} {self.message_id} to {self.destination_id}"


class DeliveryDay(models.Model):
    """Per destination, day and final status: how many deliveries ended so. Counted when a
    row reaches its final status (a replayed row counts again), so pruning rows loses no count."""

    destination = models.ForeignKey(Destination, on_delete=models.CASCADE, related_name="days", db_index=False)
    day = models.DateField()
    status = models.CharField(max_length=10, choices=Delivery.Status.choices)
    count = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["destination", "day", "status"], name="delivery_day_uniq")]

    def __str__(self) -> str:
        return f"{self.destination_id} {self.day} {self.status}: {self.count}"


class FullSync(models.Model):
    """Sending a subject's current members (an audience's) to a destination that just
    subscribed to it, in chunks, with its progress for the admin."""

    class Status(models.TextChoices):
        RUNNING = "running"
        DONE = "done"
        FAILED = "failed"

    destination = models.ForeignKey(Destination, on_delete=models.CASCADE, related_name="syncs")
    subject = models.CharField(max_length=200, help_text="The audience key.")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.RUNNING)
    total = models.PositiveIntegerField(default=0)
    done = models.PositiveIntegerField(default=0)
    cursor = models.CharField(max_length=200, blank=True, default="")
    error = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now)
    touched_at = models.DateTimeField(default=timezone.now, help_text="The last page sent: a stale one is restarted.")
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"sync of {self.subject} to {self.destination_id}"

    @property
    def progress(self) -> int:
        """Percent done."""
        return 100 if self.status == self.Status.DONE else int(100 * self.done / self.total) if self.total else 0
