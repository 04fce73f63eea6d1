"""Engineers may view training checkpoints (ftplatform.roles)."""
from django.db import migrations

from ftplatform.roles import sync_roles


def forwards(apps, schema_editor):
    sync_roles(apps)


class Migration(migrations.Migration):
    dependencies = [
        ("ftplatform", "0001_roles"),
        ("training", "0002_run_lifecycle"),
    ]
    operations = [migrations.RunPython(forwards, migrations.RunPython.noop)]
