"""`python manage.py create_source NAME [--write-key KEY]`: prints the write key last."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from ingest.models import Source


class Command(BaseCommand):
    help = "Create a source (or show an existing one) and print its write key on the last line."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name")
        parser.add_argument("--write-key", help="Use this write key instead of a generated one.")

    def handle(self, *args: Any, name: str, write_key: str | None, **options: Any) -> None:
        source = Source.objects.filter(name=name).first()
        if source is None:
            if write_key and Source.objects.filter(write_key=write_key).exists():
                raise CommandError("Another source already uses that write key.")
            source = Source.objects.create(name=name, **({"write_key": write_key} if write_key else {}))
            self.stderr.write(f"Created source {name!r}.")
        elif write_key and write_key != source.write_key:
            raise CommandError(f"Source {name!r} exists with a different write key.")
        else:
            self.stderr.write(f"Source {name!r} already exists.")
        self.stdout.write(source.write_key)
