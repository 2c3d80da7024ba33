"""`python manage.py compute_audiences [--key KEY]`: recompute audiences over all history."""

from __future__ import annotations

import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DatabaseError
from tqdm import tqdm

from audiences.models import Audience
from audiences.services import audience_compute, ordered


class Command(BaseCommand):
    help = (
        "Recompute every enabled audience (or one, with --key) over all history: one set-based query each, "
        "after the audiences it references, and only the entries and exits written (each recorded for the "
        "destinations). Real-time updates go on meanwhile. Computed traits an audience reads are taken as they "
        "are: run compute_traits first to recompute those too."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--key", help="Only this audience.")
        parser.add_argument("--no-progress", action="store_true")

    def handle(self, *args: Any, key: str | None, no_progress: bool, **options: Any) -> None:
        audiences = ordered(list(Audience.objects.filter(enabled=True)))
        if key is not None:
            chosen = [a for a in audiences if a.key == key]
            if not chosen:
                if Audience.objects.filter(key=key).exists():
                    raise CommandError(f"The audience {key!r} is disabled: enable it first.")
                raise CommandError(f"No audience has the key {key!r}.")
            audiences = chosen
        if not audiences:
            self.stdout.write("No enabled audiences: nothing to do.")
            return
        failed: list[str] = []
        with tqdm(total=len(audiences), unit="audience", disable=no_progress, file=sys.stderr) as bar:
            for audience in audiences:
                bar.set_postfix_str(audience.key)
                try:
                    result = audience_compute(audience_id=audience.pk, cause="recomputed")
                except DatabaseError as exc:  # marked failed with the error by the service
                    failed.append(audience.key)
                    self.stderr.write(f"{audience.key}: failed: {exc}")
                else:
                    if result is not None:
                        self.stdout.write(
                            f"{audience.key}: {result.size} members ({result.entered} entered, {result.exited} "
                            f"exited) in {result.duration_ms / 1000:.1f} s"
                        )
                bar.update(1)
        self.stdout.write(f"Recomputed {len(audiences) - len(failed)} of {len(audiences)} audiences.")
        if failed:
            raise CommandError(f"{len(failed)} failed: {', '.join(failed)} (the error is on each audience's page).")
