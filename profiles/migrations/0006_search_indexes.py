"""Trigram indexes for profile search (`profiles.selectors.profile_search`), PostgreSQL only.

They are not declared in `Meta.indexes`: they need the pg_trgm extension and an expression
over jsonb that SQLite has no equivalent for, and SQLite's fallback is a plain scan. pg_trgm
is a trusted extension (PostgreSQL 13+), so a database owner without superuser can create it.
"""

from django.db import migrations

FORWARD = [
    "CREATE EXTENSION IF NOT EXISTS pg_trgm",
    # Email fragments: emails are stored lowercased, searched with LIKE '%fragment%'.
    "CREATE INDEX IF NOT EXISTS identity_email_trgm ON profiles_identity "
    "USING gin (value gin_trgm_ops) WHERE kind = 'email'",
    # Trait values (not keys), upper-cased: the expression profile_search filters on.
    "CREATE INDEX IF NOT EXISTS profile_trait_values_trgm ON profiles_profile "
    "USING gin ((upper((jsonb_path_query_array(traits, 'strict $.*'))::text)) gin_trgm_ops)",
]
BACKWARD = [
    "DROP INDEX IF EXISTS profile_trait_values_trgm",
    "DROP INDEX IF EXISTS identity_email_trgm",
]


def forward(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        for statement in FORWARD:
            schema_editor.execute(statement)


def backward(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        for statement in BACKWARD:
            schema_editor.execute(statement)


class Migration(migrations.Migration):
    dependencies = [("profiles", "0005_drop_redundant_indexes")]
    operations = [migrations.RunPython(forward, backward, elidable=False)]
