"""`python manage.py create_source NAME [--kind KIND] [--write-key KEY] [--signing-key KEY]
[--webhook-url URL] [--base-url URL]`: prints the write key (HTTP sources) or the webhook URL
to paste into the provider (email providers' sources) on the last line.

No flag is ever ignored: one that does not apply to the source's kind is refused, and
nothing is created."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from ingest.models import Source
from ingest.webhooks import webhook_url

# The flags each kind takes (beyond the name and --kind).
_URL_FLAGS = {"webhook_url", "base_url"}
FLAGS: dict[str, set[str]] = {
    Source.Kind.HTTP: {"write_key"},
    # Authenticated by our own secret, in the URL or its Basic auth: no key of the provider's.
    Source.Kind.MAILJET: _URL_FLAGS,
    Source.Kind.POSTMARK: _URL_FLAGS,
    Source.Kind.MAILCHIMP: _URL_FLAGS,
    # Authenticated by the provider's key (SES: the topic ARN; Braze: the bearer token).
    Source.Kind.MAILGUN: _URL_FLAGS | {"signing_key"},
    Source.Kind.SENDGRID: _URL_FLAGS | {"signing_key"},
    Source.Kind.MANDRILL: _URL_FLAGS | {"signing_key"},
    Source.Kind.SES: _URL_FLAGS | {"signing_key"},
    Source.Kind.BRAZE: _URL_FLAGS | {"signing_key"},
}
_WHY = {
    "write_key": "only HTTP sources have a write key to send with",
    "signing_key": "this provider is authenticated by the secret in the URL this command prints",
    "webhook_url": "HTTP sources receive no webhooks",
    "base_url": "an HTTP source prints its write key, not a URL",
}


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


class Command(BaseCommand):
    help = (
        "Create a source (or show an existing one). The last line is its write key, or for an email "
        "provider the webhook URL to paste into the provider."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name")
        parser.add_argument("--kind", choices=Source.Kind.values, help="Default: http, or the existing source's.")
        parser.add_argument("--write-key", help="HTTP sources: use this write key instead of a generated one.")
        parser.add_argument(
            "--signing-key",
            help="The provider's key: Mailgun webhook signing key, SendGrid verification public key, Mandrill "
            "webhook key, the SNS topic ARN for SES, or the bearer token for Braze (else one is generated).",
        )
        parser.add_argument("--webhook-url", help="The webhook URL exactly as registered at the provider (Mandrill).")
        parser.add_argument("--base-url", default=None, help="This CDP's public URL; default CDP_PUBLIC_URL.")

    def handle(self, *args: Any, name: str, kind: str | None, **o: Any) -> None:
        source = Source.objects.filter(name=name).first()
        if source is not None and kind is not None and kind != source.kind:
            raise CommandError(f"Source {name!r} exists with kind {source.kind!r}.")
        kind = source.kind if source is not None else (kind or Source.Kind.HTTP)
        given = {flag for flag in ("write_key", "signing_key", "webhook_url", "base_url") if o.get(flag) is not None}
        if wrong := sorted(given - FLAGS[kind]):
            raise CommandError(
                "; ".join(f"{_flag(f)} does not apply to a {kind} source: {_WHY[f]}" for f in wrong) + "."
            )
        write_key = o.get("write_key")
        if source is None:
            if write_key and Source.objects.filter(write_key=write_key).exists():
                raise CommandError("Another source already uses that write key.")
            source = Source.objects.create(name=name, kind=kind, **({"write_key": write_key} if write_key else {}))
            self.stderr.write(f"Created source {name!r}.")
        elif write_key and write_key != source.write_key:
            raise CommandError(f"Source {name!r} exists with a different write key.")
        else:
            self.stderr.write(f"Source {name!r} already exists.")
        self._configure(source, signing_key=o.get("signing_key"), webhook=o.get("webhook_url"), base=o["base_url"])
        self._print(source, base=o["base_url"] or settings.CDP_PUBLIC_URL)

    def _configure(self, source: Source, *, signing_key: str | None, webhook: str | None, base: str | None) -> None:
        changed = []
        # Braze authenticates with a bearer token of our choosing: the key given is that token.
        key_field = "webhook_secret" if source.kind == Source.Kind.BRAZE else "signing_key"
        if signing_key is not None and signing_key != getattr(source, key_field):
            setattr(source, key_field, signing_key)
            changed.append(key_field)
        if webhook is not None and webhook != source.webhook_url:
            source.webhook_url = webhook
            changed.append("webhook_url")
        if source.kind == Source.Kind.MANDRILL and not source.webhook_url:
            # Mandrill signs the URL it was given: keep the one printed as the one registered.
            source.webhook_url = webhook_url(source, base_url=base or settings.CDP_PUBLIC_URL)
            changed.append("webhook_url")
        if changed:
            source.save(update_fields=changed)

    def _print(self, source: Source, *, base: str) -> None:
        if source.kind == Source.Kind.HTTP:
            self.stdout.write(source.write_key)
            return
        if source.kind == Source.Kind.BRAZE:
            self.stdout.write(f"Bearer token (Braze: Currents > Custom HTTP > token): {source.webhook_secret}")
        elif source.kind in ("mailgun", "sendgrid", "mandrill") and not source.signing_key:
            self.stderr.write(f"Set the provider's signing key (--signing-key) before {source.kind} can post.")
        elif source.kind == Source.Kind.SES and not source.signing_key:
            self.stderr.write("Set the SNS topic ARN (--signing-key) before subscribing: other topics are refused.")
        self.stdout.write(webhook_url(source, base_url=base))
