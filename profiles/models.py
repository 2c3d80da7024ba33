"""The event log and the people it belongs to.

`Event.source_id` is the id of an `ingest.Source` but deliberately not a foreign key:
profiles sits below ingest (docs/architecture.md) and must not depend on it.
"""

from __future__ import annotations

import secrets

from django.conf import settings
from django.core.validators import MinValueValidator
from django.db import models
from django.db.models import Q
from django.db.models.signals import pre_delete
from django.dispatch import receiver
from django.utils import timezone

_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def new_profile_key() -> str:
    """A public id shaped like Segment's segment_id, e.g. `use_4paotyretuj4Ta2bEYQ0vKOq1e7`:
    27 base-62 digits of one 160-bit random number (a single read of the OS's randomness)."""
    number = int.from_bytes(secrets.token_bytes(20), "big")
    digits = []
    for _ in range(27):
        number, digit = divmod(number, 62)
        digits.append(_ALPHABET[digit])
    return "use_" + "".join(digits)


class Profile(models.Model):
    """One person. A merged-away profile stays as a tombstone: `merged_into` points at the
    live winner, so its old id still resolves."""

    key = models.CharField(max_length=32, unique=True, default=new_profile_key, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    first_seen_at = models.DateTimeField(null=True, blank=True)
    last_seen_at = models.DateTimeField(null=True, blank=True)
    traits = models.JSONField(default=dict, blank=True)
    trait_meta = models.JSONField(
        default=dict, blank=True, help_text="Per trait: the event time, source and message that last set it."
    )
    merge_count = models.PositiveIntegerField(default=0)
    merged_into = models.ForeignKey("self", null=True, blank=True, on_delete=models.PROTECT, related_name="merged_from")

    class Meta:
        indexes = [models.Index(fields=["-last_seen_at"], name="profile_last_seen")]

    def __str__(self) -> str:
        return self.key


@receiver(pre_delete, sender=Profile)
def _profile_delete_waits_for_resolution(sender: type[Profile], instance: Profile, using: str, **_: object) -> None:
    """Deleting a profile (the admin allows it) first takes its row lock, which conflicts with
    the one resolution holds while it assigns events: `Event.profile` has no database
    constraint (docs/architecture.md), so without the wait Django's SET NULL of the events
    would miss those a resolution in flight assigns, and they would point at no profile."""
    list(Profile.objects.using(using).select_for_update().filter(pk=instance.pk).values_list("pk", flat=True))


class Identity(models.Model):
    """An identifier `(kind, value)` and the profile that owns it, with where it came from."""

    kind = models.CharField(max_length=64)
    value = models.TextField()
    profile = models.ForeignKey(Profile, on_delete=models.CASCADE, related_name="identities", db_index=False)
    first_seen_at = models.DateTimeField()
    last_seen_at = models.DateTimeField()
    first_event_id = models.BigIntegerField(null=True, blank=True)
    first_message_id = models.CharField(max_length=100, blank=True, default="")
    source_id = models.PositiveIntegerField(null=True, blank=True)
    separations = models.JSONField(
        default=dict, blank=True, help_text="Split id -> side: identifiers on different sides never merge again."
    )

    class Meta:
        verbose_name_plural = "identities"
        constraints = [models.UniqueConstraint(fields=["kind", "value"], name="identity_kind_value_uniq")]
        indexes = [models.Index(fields=["profile", "kind"], name="identity_profile")]

    def __str__(self) -> str:
        return f"{self.kind}:{self.value}"


class IdentityLink(models.Model):
    """Two identifiers seen together in one message: the edges networkx splits and rebuilds."""

    # Indexed by the unique (a, b) and by identitylink_b.
    a = models.ForeignKey(Identity, on_delete=models.CASCADE, related_name="+", db_index=False)
    b = models.ForeignKey(Identity, on_delete=models.CASCADE, related_name="+", db_index=False)
    first_event_id = models.BigIntegerField(null=True, blank=True)
    first_message_id = models.CharField(max_length=100, blank=True, default="")
    first_seen_at = models.DateTimeField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["a", "b"], name="identitylink_pair_uniq")]
        indexes = [models.Index(fields=["b"], name="identitylink_b")]

    def __str__(self) -> str:
        return f"{self.a_id}-{self.b_id}"


class Merge(models.Model):
    """One profile merged into another: by a message (automatic) or by a staff user."""

    winner = models.ForeignKey(Profile, on_delete=models.CASCADE, related_name="merges_won", db_index=False)
    loser = models.ForeignKey(Profile, on_delete=models.CASCADE, related_name="merges_lost")
    event_id = models.BigIntegerField(null=True, blank=True)
    message_id = models.CharField(max_length=100, blank=True, default="")
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    reason = models.TextField(blank=True, default="")
    identifiers = models.JSONField(default=list, help_text="The identifiers that joined them, kind:value.")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes = [models.Index(fields=["winner", "-created_at"], name="merge_winner")]

    def __str__(self) -> str:
        return f"{self.loser_id} -> {self.winner_id}"


class Demotion(models.Model):
    """An identifier dropped from a message because keeping it would have broken a rule."""

    event_id = models.BigIntegerField()
    message_id = models.CharField(max_length=100, blank=True, default="")
    kind = models.CharField(max_length=64)
    value = models.TextField()
    rule = models.CharField(max_length=100)
    profile = models.ForeignKey(
        Profile, null=True, blank=True, on_delete=models.SET_NULL, related_name="demotions", db_index=False
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["event_id", "kind", "value"], name="demotion_event_identifier_uniq")
        ]
        indexes = [models.Index(fields=["profile", "-created_at"], name="demotion_profile")]

    def __str__(self) -> str:
        return f"{self.kind}:{self.value} ({self.rule})"


class IdentityAudit(models.Model):
    """What a person did to the graph (split, remove an identifier, merge by hand, rebuild),
    with who and why, written in the same transaction as the change."""

    class Action(models.TextChoices):
        SPLIT = "split"
        REMOVE_IDENTIFIER = "remove_identifier"
        MANUAL_MERGE = "manual_merge"
        REBUILD = "rebuild"

    action = models.CharField(max_length=20, choices=Action.choices)
    profile = models.ForeignKey(Profile, null=True, blank=True, on_delete=models.SET_NULL, related_name="audits")
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    reason = models.TextField()
    details = models.JSONField(default=dict)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes = [models.Index(fields=["profile", "-created_at"], name="audit_profile")]

    def __str__(self) -> str:
        return f"{self.action} {self.profile_id}"


class IdentityKind(models.Model):
    """Per identifier kind: priority, limit and blocked values (Segment's identity settings)."""

    class Window(models.TextChoices):
        EVER = "ever"
        WEEKLY = "weekly"
        MONTHLY = "monthly"
        ANNUALLY = "annually"

    class ReadFrom(models.TextChoices):
        BUILTIN = "", "built in (the Segment spec)"
        TRAITS = "traits", "traits (and context.traits)"
        PROPERTIES = "properties"
        CONTEXT = "context"

    kind = models.CharField(max_length=64, unique=True, help_text="Lowercase, e.g. user_id, email, shopify_id.")
    priority = models.PositiveIntegerField(
        null=True, blank=True, help_text="1 is the most trusted. Empty: after the ranked kinds, alphabetically."
    )
    limit = models.PositiveIntegerField(default=5, validators=[MinValueValidator(1)])
    window = models.CharField(max_length=10, choices=Window.choices, default=Window.ANNUALLY)
    blocked_values = models.TextField(
        blank=True, help_text="One per line. Exact values (any case), or /regex/ between slashes."
    )
    read_from = models.CharField(max_length=12, choices=ReadFrom.choices, blank=True, default="")
    key = models.CharField(max_length=100, blank=True, help_text="For custom kinds: the key to read.")
    auto_created = models.BooleanField(
        default=False, editable=False, help_text="Added by a message (an unseen context.externalIds type)."
    )

    class Meta:
        ordering = [models.F("priority").asc(nulls_last=True), "kind"]

    def __str__(self) -> str:
        return self.kind


class IdentityConfig(models.Model):
    """Workspace-wide identity settings: one row."""

    max_merges = models.PositiveIntegerField(default=100, help_text="Merges per profile, at most.")
    max_identities = models.PositiveIntegerField(default=1000, help_text="Identifiers per profile, at most.")
    alias_merges = models.BooleanField(
        default=True,
        help_text="alias links previousId with userId (under the same protection). Off: alias never merges, "
        "as in Segment Unify.",
    )
    max_auto_kinds = models.PositiveIntegerField(
        default=50,
        help_text="Identity kinds that messages may add (unseen context.externalIds types; a write key is public). "
        "Past it, such identifiers stay on the event but are not used for matching, and the debugger counts them.",
    )

    class Meta:
        verbose_name = verbose_name_plural = "identity settings"

    def __str__(self) -> str:
        return "Identity settings"


class EventBatch(models.Model):
    """Messages accepted by the edge and not yet in the event log: one row per request and
    source, the validated messages in one blob. The pipeline takes a batch, resolves its
    messages, writes them to the log with their profile, and deletes the batch, in one
    transaction: an event row is written once, never updated (docs/architecture.md)."""

    id = models.BigAutoField(primary_key=True)
    source_id = models.PositiveIntegerField(help_text="The ingest.Source that received it.")
    received_at = models.DateTimeField()
    size = models.PositiveIntegerField(help_text="How many messages it holds.")
    payload = models.BinaryField(help_text="The messages, as `profiles.services.events.batch_encode` writes them.")
    # Database defaults: the edge and resolution insert batches with raw SQL.
    attempts = models.PositiveIntegerField(default=0, db_default=0, help_text="Times resolving it failed.")
    last_error = models.TextField(blank=True, default="", db_default="")
    parked_at = models.DateTimeField(
        null=True, blank=True, help_text="Set once it failed too often: left alone until an operator retries it."
    )

    class Meta:
        verbose_name_plural = "event batches"

    def __str__(self) -> str:
        return f"batch {self.pk}: {self.size} messages from source {self.source_id}"


class Event(models.Model):
    """One Segment message in the log, as received and normalised, with the profile the
    pipeline resolved it to (none when it carries no usable identifier). The pipeline
    writes it once (`processed_at` is when); only merges, splits and a deleted profile
    change its `profile` afterwards."""

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
    # No single-column index: event_profile_timeline leads with profile. (A second index on
    # profile_id let PostgreSQL intersect every unresolved event into each lookup by id.)
    # No database constraint: see docs/architecture.md ("the event log has no foreign key").
    profile = models.ForeignKey(
        Profile,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="events",
        db_index=False,
        db_constraint=False,
    )
    processed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["source_id", "message_id"], name="event_source_message_uniq"),
        ]
        indexes = [
            # Partial: an event enters each only when it has the column (only tracks have an
            # event name; events with no usable identifier have no profile).
            models.Index(
                fields=["profile", "-timestamp"], name="event_profile_timeline", condition=Q(profile__isnull=False)
            ),
            models.Index(fields=["event", "timestamp"], name="event_name_time", condition=Q(event__isnull=False)),
            models.Index(fields=["source_id", "-received_at"], name="event_source_recent"),
        ]

    def __str__(self) -> str:
        return f"{self.type} {self.event or self.name or ''} {self.message_id}".strip()


class AccessToken(models.Model):
    """A key to the Profile API and the REST API, read-only unless `can_write`. Only the SHA-256 of the token is
    stored; the token itself is shown once, when it is created. A write key is never a token."""

    name = models.CharField(max_length=100)
    token_hash = models.CharField(max_length=64, unique=True, editable=False)
    prefix = models.CharField(max_length=16, editable=False, help_text="The token's first characters, to tell it.")
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, editable=False, related_name="+"
    )
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    revoked_at = models.DateTimeField(null=True, blank=True, editable=False)
    can_write = models.BooleanField(
        default=False,
        help_text="May change definitions through the REST API (computed traits, audiences, …). Off: read only.",
    )

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @property
    def audit_label(self) -> str:
        """Who the audit log says made a change through the API."""
        return f"access token {self.name} ({self.prefix}…)"


class ProfileChange(models.Model):
    """The profile change feed: one row per profile that a transaction changed, written in
    that transaction (`profiles.services.feed.feed_write`). It is how a change in profiles
    reaches the floors above (computed traits, audiences, destinations): each consumer reads
    it in id order with its own cursor (`FeedConsumer`). Ids become visible in order (a
    writer holds the feed lock from its insert to its commit), so a cursor never passes a
    row still to come. Pruned once every consumer has passed it.

    `what` holds what changed, with only the keys that apply: `events` (name -> count of
    new events: track names, `Page Viewed`, `Screen Viewed`), `traits` (custom trait keys),
    `computed` (computed trait keys), `identifiers` (`kind:value` added), `removed`
    (identifiers removed), `merged` (profiles merged into this one), `merged_into`, `split`
    (profiles split off this one), `split_from`, `rebuilt`, `deleted`; and `cause`. A row
    for profile 0 with `all` says every profile may have changed those keys (a computed
    trait recomputed in full): consumers then recompute in full too."""

    id = models.BigAutoField(primary_key=True)
    profile_id = models.BigIntegerField(help_text="Not a foreign key: a deleted profile's change stays.")
    at = models.DateTimeField()
    what = models.JSONField()

    def __str__(self) -> str:
        return f"#{self.pk} profile {self.profile_id}: {self.what}"


class FeedConsumer(models.Model):
    """A reader of the change feed and how far it has read: everything up to `position` is
    done. Each consumer's app registers it in a migration, with the Celery task that
    consumes it (woken after each change is committed, and by beat)."""

    name = models.CharField(max_length=50, primary_key=True)
    task = models.CharField(max_length=100, help_text="The Celery task that consumes it.")
    position = models.BigIntegerField(default=0, help_text="The id of the last change it has processed.")
    updated_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"{self.name} at {self.position}"


# Computed traits live in their own module, and are profiles' models.
from profiles.computed.models import ComputedTrait, ComputedTraitChange, ComputedTraitValue, EventName  # noqa: E402

__all__ = [
    "AccessToken", "ComputedTrait", "ComputedTraitChange", "ComputedTraitValue", "Demotion", "Event", "EventBatch",
    "EventName", "FeedConsumer", "Identity", "IdentityAudit", "IdentityConfig", "IdentityKind", "IdentityLink",
    "Merge", "Profile", "ProfileChange",
]  # fmt: skip
