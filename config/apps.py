from django.apps import AppConfig


class ConfigConfig(AppConfig):
    """Installed for its management command (demo), which runs the whole pipeline."""

    name = "config"
    verbose_name = "ftplatform (assembled)"
