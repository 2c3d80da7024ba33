"""`python manage.py tracked_link --source NAME --url URL [...]`: prints a signed link."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from ingest.models import Source
from ingest.services import tracked_link


def _pairs(values: list[str], option: str) -> dict[str, str]:
    pairs = {}
    for value in values:
        key, sep, val = value.partition("=")
        if not sep or not key:
            raise CommandError(f"{option} takes key=value, not {value!r}.")
        pairs[key] = val
    return pairs


class Command(BaseCommand):
    help = "Print a signed tracked link that records a click and redirects to --url."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--source", required=True, help="The source's name.")
        parser.add_argument("--url", required=True, help="Where the link goes.")
        parser.add_argument("--user-id")
        parser.add_argument("--anonymous-id")
        parser.add_argument("--event", help="The track event; default 'Email Link Clicked'.")
        parser.add_argument("--property", action="append", default=[], metavar="KEY=VALUE")
        parser.add_argument("--trait", action="append", default=[], metavar="KEY=VALUE")
        parser.add_argument("--base-url", default=None, help="This CDP's public URL; default CDP_PUBLIC_URL.")

    def handle(self, *args: Any, **o: Any) -> None:
        source = Source.objects.filter(name=o["source"]).first()
        if source is None:
            raise CommandError(f"There is no source named {o['source']!r}.")
        try:
            link = tracked_link(
                source=source,
                url=o["url"],
                base_url=o["base_url"] or settings.CDP_PUBLIC_URL,
                user_id=o["user_id"],
                anonymous_id=o["anonymous_id"],
                event=o["event"],
                properties=_pairs(o["property"], "--property"),
                traits=_pairs(o["trait"], "--trait"),
            )
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(link)
