"""`python manage.py compute_traits [--key KEY]`: recompute computed traits in full."""

from __future__ import annotations

import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DatabaseError
from tqdm import tqdm

from profiles.computed.services import computed_trait_compute
from profiles.models import ComputedTrait


class Command(BaseCommand):
    help = (
        "Recompute every enabled computed trait and score (or one, with --key) over all profiles: one "
        "set-based query per definition, and only the values that changed are written (each change recorded "
        "and put on the change feed). Real-time updates go on meanwhile."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--key", help="Only this computed trait.")
        parser.add_argument("--no-progress", action="store_true")

    def handle(self, *args: Any, key: str | None, no_progress: bool, **options: Any) -> None:
        traits = ComputedTrait.objects.order_by("key")
        if key is not None:
            trait = traits.filter(key=key).first()
            if trait is None:
                raise CommandError(f"No computed trait has the key {key!r}.")
            if not trait.enabled:
                raise CommandError(f"The computed trait {key!r} is disabled: enable it first.")
            traits = traits.filter(pk=trait.pk)
        else:
            traits = traits.filter(enabled=True)
        chosen = list(traits.values_list("pk", "key"))
        if not chosen:
            self.stdout.write("No enabled computed traits: nothing to do.")
            return
        failed: list[str] = []
        changed = 0
        with tqdm(total=len(chosen), unit="trait", disable=no_progress, file=sys.stderr) as bar:
            for trait_id, trait_key in chosen:
                bar.set_postfix_str(trait_key)
                try:
                    result = computed_trait_compute(trait_id=trait_id, scope="full")
                except DatabaseError as exc:  # marked failed with the error by the service
                    failed.append(trait_key)
                    self.stderr.write(f"{trait_key}: failed: {exc}")
                else:
                    if result is not None:
                        changed += result.changed
                        self.stdout.write(
                            f"{trait_key}: {result.changed} values changed in {result.duration_ms / 1000:.1f} s"
                        )
                bar.update(1)
        self.stdout.write(f"Recomputed {len(chosen) - len(failed)} of {len(chosen)} traits; {changed} values changed.")
        if failed:
            raise CommandError(f"{len(failed)} failed: {', '.join(failed)} (the error is on each trait's admin page).")
