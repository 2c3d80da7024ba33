"""`python manage.py rebuild_identities`: replay the event log into a fresh identity graph."""

from __future__ import annotations

import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandParser
from tqdm import tqdm

from profiles.models import Event
from profiles.services.identity_ops import identities_rebuild


class Command(BaseCommand):
    help = (
        "Rebuild every profile from the event log, replayed in timestamp order. Splits are kept; "
        "old profile ids become tombstones that resolve to the new profiles. Resolution waits while it runs."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--reason", default="rebuild_identities", help="Kept in the audit log.")
        parser.add_argument("--no-progress", action="store_true")

    def handle(self, *args: Any, reason: str, no_progress: bool, **options: Any) -> None:
        with tqdm(total=Event.objects.count(), unit="event", disable=no_progress, file=sys.stderr) as bar:
            result = identities_rebuild(reason=reason, progress=bar.update)
        self.stdout.write(
            f"Rebuilt {result.events} events into {result.profiles} profiles with {result.identities} "
            f"identifiers ({result.demotions} demotions)."
        )
