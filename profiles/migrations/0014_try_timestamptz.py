"""`cdp_try_timestamptz(text)`: a string as timestamptz, or NULL when it is not one. The
query vocabulary's date operators read trait and property values through it (after an
ISO 8601 pattern check), so a value such as 2026-02-31 never fails a whole query.
PostgreSQL only: SQLite's julianday() already answers NULL."""

from django.db import migrations

CREATE = """
CREATE OR REPLACE FUNCTION cdp_try_timestamptz(value text) RETURNS timestamptz
LANGUAGE plpgsql STABLE PARALLEL SAFE AS $$
BEGIN
    RETURN value::timestamptz;
EXCEPTION WHEN others THEN
    RETURN NULL;
END $$;
"""


def create(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(CREATE)


def drop(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute("DROP FUNCTION IF EXISTS cdp_try_timestamptz(text)")


class Migration(migrations.Migration):
    dependencies = [("profiles", "0013_change_feed")]
    operations = [migrations.RunPython(create, drop)]
