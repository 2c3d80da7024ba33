"""`manage.py create_access_token NAME`: a read-only token for the Profile API and the REST
API. The token is printed on the last line, once; only its hash is kept."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from profiles.services.tokens import access_token_create


class Command(BaseCommand):
    help = "Create a read-only API access token; the token is printed on the last line."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name", help="What the token is for, e.g. 'CRM sync'.")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            token, raw = access_token_create(name=options["name"])
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(f"Access token {token.name!r} created. It is shown only now; store it safely:")
        self.stdout.write(raw)
