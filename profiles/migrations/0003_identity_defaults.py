"""Segment's default identity settings (segment-spec section 4), copied here so this
migration never changes when the code does."""

from django.db import migrations

BLOCKED = "null\nundefined\nanonymous\n-1\n0\n/^[0-]*$/"
DEFAULTS = [
    # kind, priority, limit, window
    ("user_id", 1, 1, "ever"),
    ("email", 2, 5, "annually"),
    ("android.id", None, 5, "annually"),
    ("android.idfa", None, 5, "annually"),
    ("android.push_token", None, 5, "annually"),
    ("anonymous_id", None, 5, "monthly"),
    ("ga_client_id", None, 5, "monthly"),
    ("ios.id", None, 5, "annually"),
    ("ios.idfa", None, 5, "annually"),
    ("ios.push_token", None, 5, "annually"),
]


def seed(apps, schema_editor):
    IdentityKind = apps.get_model("profiles", "IdentityKind")
    IdentityConfig = apps.get_model("profiles", "IdentityConfig")
    for kind, priority, limit, window in DEFAULTS:
        IdentityKind.objects.get_or_create(
            kind=kind, defaults={"priority": priority, "limit": limit, "window": window, "blocked_values": BLOCKED}
        )
    IdentityConfig.objects.get_or_create(pk=1)


class Migration(migrations.Migration):
    dependencies = [("profiles", "0002_identity")]
    operations = [migrations.RunPython(seed, migrations.RunPython.noop)]
