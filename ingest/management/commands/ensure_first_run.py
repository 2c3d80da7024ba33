"""`python manage.py ensure_first_run`: a first source and an admin login, for the quickstart.

Idempotent. Prints `write_key=…`, `admin_user=…` and, only when it creates the login,
`admin_password=…`; an existing password is never printed or changed."""

from __future__ import annotations

import secrets
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandParser

from ingest.models import Source


class Command(BaseCommand):
    help = "Create the first source and admin login if they do not exist, and print them."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--source-name", default="My website")
        parser.add_argument("--admin-user", default="admin")

    def handle(self, *args: Any, source_name: str, admin_user: str, **options: Any) -> None:
        source = Source.objects.order_by("pk").first() or Source.objects.create(name=source_name)
        self.stdout.write(f"source={source.name}")
        self.stdout.write(f"write_key={source.write_key}")
        User = get_user_model()
        self.stdout.write(f"admin_user={admin_user}")
        if not User.objects.filter(username=admin_user).exists():
            password = secrets.token_urlsafe(12)
            User.objects.create_superuser(username=admin_user, email="", password=password)
            self.stdout.write(f"admin_password={password}")
