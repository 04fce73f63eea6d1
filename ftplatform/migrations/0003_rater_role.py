"""The rater role, and engineers' permissions on rating criteria and ratings (ftplatform.roles)."""
from django.db import migrations

from ftplatform.roles import sync_roles


def forwards(apps, schema_editor):
    sync_roles(apps)


class Migration(migrations.Migration):
    dependencies = [
        ("ftplatform", "0002_checkpoint_permission"),
        ("evaluation", "0002_ratings_and_confidence"),
    ]
    operations = [migrations.RunPython(forwards, migrations.RunPython.noop)]
