"""The edge's own tables: sources (write keys), and the ingest debugger's bounded log."""

from __future__ import annotations

import secrets

from django.db import models


def new_write_key() -> str:
    return secrets.token_urlsafe(24)


def new_signing_secret() -> str:
    return secrets.token_urlsafe(32)


def new_webhook_secret() -> str:
    return secrets.token_urlsafe(24)


class Source(models.Model):
    """Where events come from. The write key authenticates the tracking API; the signing
    secret, which never leaves the server, signs tracked links. An email provider's source
    (`kind` other than http) receives that provider's webhooks at its own URL
    (`ingest.webhooks.webhook_url`), authenticated as the provider does it. A `sql` source
    belongs to one SQL trait (the floor above): its runs' identify calls come from it."""

    class Kind(models.TextChoices):
        HTTP = "http", "HTTP tracking API"
        MAILJET = "mailjet", "Mailjet event webhooks"
        SENDGRID = "sendgrid", "SendGrid event webhook"
        MAILGUN = "mailgun", "Mailgun webhooks"
        MAILCHIMP = "mailchimp", "Mailchimp audience webhooks"
        MANDRILL = "mandrill", "Mailchimp Transactional (Mandrill) webhooks"
        POSTMARK = "postmark", "Postmark webhooks"
        SES = "ses", "Amazon SES via SNS"
        BRAZE = "braze", "Braze Currents (custom HTTP)"
        SQL = "sql", "SQL trait (its runs send identify calls)"

    name = models.CharField(max_length=100, unique=True)
    kind = models.CharField(max_length=20, choices=Kind.choices, default=Kind.HTTP)
    write_key = models.CharField(max_length=100, unique=True, default=new_write_key)
    signing_secret = models.CharField(max_length=100, default=new_signing_secret, editable=False)
    enabled = models.BooleanField(default=True)
    allowed_redirect_domains = models.TextField(
        blank=True,
        default="",
        help_text="Tracked links may redirect unsigned to these domains and their subdomains. One per line.",
    )
    webhook_secret = models.CharField(
        max_length=100,
        default=new_webhook_secret,
        help_text="Ours, part of the webhook URL or header: the Basic-auth password (Mailjet, Postmark), "
        "the URL secret (Mailchimp), the bearer token (Braze).",
    )
    signing_key = models.TextField(
        blank=True,
        default="",
        help_text="The provider's: Mailgun webhook signing key, SendGrid verification public key, Mandrill "
        "webhook key, or the SNS topic ARN allowed for SES.",
    )
    webhook_url = models.CharField(
        max_length=500,
        blank=True,
        default="",
        help_text="The webhook URL exactly as registered at the provider (Mandrill signs it). "
        "Empty: the URL shown below.",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def redirect_domains(self) -> list[str]:
        return [d.strip().lower() for d in self.allowed_redirect_domains.split() if d.strip()]


class RejectedMessage(models.Model):
    """A message the edge refused, with why, and a truncated copy. Bounded: the
    `ingest.trim_debugger` task keeps the newest `REJECTED_KEEP_PER_SOURCE` per source."""

    source = models.ForeignKey(Source, null=True, blank=True, on_delete=models.CASCADE, db_index=False)
    received_at = models.DateTimeField()
    endpoint = models.CharField(max_length=40)
    index = models.IntegerField(null=True, blank=True, help_text="Position in the batch.")
    code = models.CharField(max_length=40)
    reason = models.TextField()
    payload = models.TextField(help_text="The first bytes of what was sent.")

    class Meta:
        indexes = [models.Index(fields=["source", "-received_at"], name="rejected_source_recent")]

    def __str__(self) -> str:
        return f"{self.code}: {self.reason}"


class IngestCounter(models.Model):
    """Messages accepted, ignored as duplicates, and rejected, per source and hour."""

    source = models.ForeignKey(Source, on_delete=models.CASCADE, related_name="counters", db_index=False)
    hour = models.DateTimeField()
    accepted = models.BigIntegerField(default=0)
    duplicates = models.BigIntegerField(default=0)
    rejected = models.BigIntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["source", "hour"], name="counter_source_hour")]

    def __str__(self) -> str:
        return f"{self.source_id} {self.hour:%Y-%m-%d %H}h"


class IngestNotice(models.Model):
    """What was counted without being stored or used, per source (0: requests with no valid
    write key), hour and reason: refusals past the per-minute cap of copies kept, identifiers
    not promoted past the identity-kind cap, and the like. The debugger shows them."""

    source_id = models.PositiveIntegerField(help_text="The source, or 0 for requests with no valid write key.")
    hour = models.DateTimeField()
    code = models.CharField(max_length=40)
    count = models.BigIntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["source_id", "hour", "code"], name="notice_source_hour_code")]

    def __str__(self) -> str:
        return f"{self.source_id} {self.hour:%Y-%m-%d %H}h {self.code}: {self.count}"


class WebhookToken(models.Model):
    """A Mailgun signature token already used, with a hash of the body it signed. Mailgun
    signs only timestamp + token, not the body, so a token is good for one body, once:
    kept as long as its timestamp is within the replay window, then trimmed."""

    source = models.ForeignKey(Source, on_delete=models.CASCADE, db_index=False)
    token = models.CharField(max_length=200)
    body_sha256 = models.CharField(max_length=64)
    seen_at = models.DateTimeField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["source", "token"], name="webhook_token_uniq")]
        indexes = [models.Index(fields=["seen_at"], name="webhook_token_seen")]

    def __str__(self) -> str:
        return f"{self.source_id}: {self.token[:12]}…"
