from django.apps import AppConfig
from django.contrib.admin import apps as admin_apps


class ConfigConfig(AppConfig):
    """Installed for its management command (demo), which runs the whole pipeline."""

    name = "config"
    verbose_name = "ftplatform (assembled)"


class FtplatformAdminConfig(admin_apps.AdminConfig):
    """django.contrib.admin with ftplatform's site (config.admin_site) as ``admin.site``; named in
    INSTALLED_APPS in its place (not this module's default config: ConfigConfig is)."""

    default = False
    default_site = "config.admin_site.FtplatformAdminSite"
