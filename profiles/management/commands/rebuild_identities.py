"""`python manage.py rebuild_identities`: replay the event log into a fresh identity graph."""

from __future__ import annotations

import sys
from datetime import timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from tqdm import tqdm

from profiles.models import Event
from profiles.services.identity_ops import REBUILD_LOCK_TIMEOUT, RebuildLocked, identities_rebuild


class Command(BaseCommand):
    help = (
        "Rebuild every profile from the event log, replayed in timestamp order. Splits are kept; "
        "old profile ids become tombstones that resolve to the new profiles. It locks the identity tables "
        "for the whole replay: resolution is blocked while it runs (events keep being accepted and wait; "
        "none is lost)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--reason", default="rebuild_identities", help="Kept in the audit log.")
        parser.add_argument("--no-progress", action="store_true")
        parser.add_argument(
            "--lock-timeout",
            type=float,
            default=REBUILD_LOCK_TIMEOUT.total_seconds(),
            help="Seconds to wait for the identity tables' lock before giving up, changing nothing "
            f"(default {REBUILD_LOCK_TIMEOUT.total_seconds():g}).",
        )

    def handle(self, *args: Any, reason: str, no_progress: bool, lock_timeout: float, **options: Any) -> None:
        if lock_timeout <= 0:
            raise CommandError("--lock-timeout must be a positive number of seconds.")
        total = Event.objects.count()
        self.stdout.write(
            f"Rebuilding identities from {total} events. Resolution is blocked until this finishes: new events "
            "are accepted and wait for it (none is lost); profiles and the Profile API show the old graph meanwhile."
        )
        try:
            with tqdm(total=total, unit="event", disable=no_progress, file=sys.stderr) as bar:
                result = identities_rebuild(
                    reason=reason, progress=bar.update, lock_timeout=timedelta(seconds=lock_timeout)
                )
        except RebuildLocked as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(
            f"Rebuilt {result.events} events into {result.profiles} profiles with {result.identities} "
            f"identifiers ({result.demotions} demotions). Resolution has resumed."
        )
