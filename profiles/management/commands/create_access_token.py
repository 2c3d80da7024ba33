"""`manage.py create_access_token NAME [--write]`: a token for the Profile API and the REST
API, read-only unless `--write` (which may also change definitions: computed traits,
audiences, destinations). The token is printed on the last line, once; only its hash is kept."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from profiles.services.tokens import access_token_create


class Command(BaseCommand):
    help = "Create an API access token (read-only unless --write); the token is printed on the last line."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name", help="What the token is for, e.g. 'CRM sync'.")
        parser.add_argument("--write", action="store_true", help="It may also change definitions through the API.")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            token, raw = access_token_create(name=options["name"], can_write=options["write"])
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        kind = "read and write" if token.can_write else "read-only"
        self.stdout.write(f"Access token {token.name!r} ({kind}) created. It is shown only now; store it safely:")
        self.stdout.write(raw)
