from django.apps import AppConfig
from django.db.models.signals import post_migrate


def _sync_roles(sender, apps=None, **kwargs):
    from django.apps import apps as global_apps

    from .roles import sync_roles

    sync_roles(apps or global_apps)  # flush sends post_migrate without the migration state's apps


class FtplatformConfig(AppConfig):
    name = "ftplatform"
    verbose_name = "ftplatform"

    def ready(self):
        # The roles migration creates the groups; this keeps them after a flush (which empties
        # every table, groups included, then sends post_migrate) and in step with roles.py.
        post_migrate.connect(_sync_roles, sender=self, dispatch_uid="ftplatform.sync_roles")
