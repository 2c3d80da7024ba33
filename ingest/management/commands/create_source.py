"""`python manage.py create_source NAME [--kind KIND] [--write-key KEY] [--signing-key KEY]
[--webhook-url URL]`: prints the write key (HTTP sources) or the webhook URL to paste into
the provider (email providers' sources) on the last line."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from ingest.models import Source
from ingest.webhooks import webhook_url


class Command(BaseCommand):
    help = (
        "Create a source (or show an existing one). The last line is its write key, or for an email "
        "provider the webhook URL to paste into the provider."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name")
        parser.add_argument("--kind", choices=Source.Kind.values, default=Source.Kind.HTTP)
        parser.add_argument("--write-key", help="Use this write key instead of a generated one.")
        parser.add_argument(
            "--signing-key",
            help="The provider's key: Mailgun webhook signing key, SendGrid verification public key, Mandrill "
            "webhook key, or the SNS topic ARN for SES.",
        )
        parser.add_argument("--webhook-url", help="The webhook URL exactly as registered at the provider (Mandrill).")
        parser.add_argument("--base-url", default=None, help="This CDP's public URL; default CDP_PUBLIC_URL.")

    def handle(self, *args: Any, name: str, kind: str, write_key: str | None, **o: Any) -> None:
        source = Source.objects.filter(name=name).first()
        if source is None:
            if write_key and Source.objects.filter(write_key=write_key).exists():
                raise CommandError("Another source already uses that write key.")
            fields: dict[str, Any] = {"name": name, "kind": kind}
            if write_key:
                fields["write_key"] = write_key
            source = Source.objects.create(**fields)
            self.stderr.write(f"Created source {name!r}.")
        elif write_key and write_key != source.write_key:
            raise CommandError(f"Source {name!r} exists with a different write key.")
        elif kind != Source.Kind.HTTP and kind != source.kind:
            raise CommandError(f"Source {name!r} exists with kind {source.kind!r}.")
        else:
            self.stderr.write(f"Source {name!r} already exists.")
        changed = []
        if o.get("signing_key") is not None and o["signing_key"] != source.signing_key:
            source.signing_key = o["signing_key"]
            changed.append("signing_key")
        if o.get("webhook_url") is not None and o["webhook_url"] != source.webhook_url:
            source.webhook_url = o["webhook_url"]
            changed.append("webhook_url")
        if source.kind == Source.Kind.MANDRILL and not source.webhook_url:
            # Mandrill signs the URL it was given: keep the one printed as the one registered.
            source.webhook_url = webhook_url(source, base_url=o["base_url"] or settings.CDP_PUBLIC_URL)
            changed.append("webhook_url")
        if changed:
            source.save(update_fields=changed)
        if source.kind == Source.Kind.HTTP:
            self.stdout.write(source.write_key)
            return
        if source.kind == Source.Kind.BRAZE:
            self.stdout.write(f"Bearer token (Braze: Currents > Custom HTTP > token): {source.webhook_secret}")
        elif source.kind in ("mailgun", "sendgrid", "mandrill") and not source.signing_key:
            self.stderr.write(f"Set the provider's signing key (--signing-key) before {source.kind} can post.")
        elif source.kind == Source.Kind.SES and not source.signing_key:
            self.stderr.write("Set the SNS topic ARN (--signing-key) before subscribing: other topics are refused.")
        self.stdout.write(webhook_url(source, base_url=o["base_url"] or settings.CDP_PUBLIC_URL))
