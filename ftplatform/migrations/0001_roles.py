"""Create the annotator, reviewer and engineer groups with their permissions (ftplatform.roles)."""
from django.db import migrations

from ftplatform.roles import sync_roles


def forwards(apps, schema_editor):
    sync_roles(apps)


class Migration(migrations.Migration):
    dependencies = [
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
        ("curation", "0002_dataset_access"),
        ("training", "0001_initial"),
        ("evaluation", "0001_initial"),
    ]
    operations = [migrations.RunPython(forwards, migrations.RunPython.noop)]
