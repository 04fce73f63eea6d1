from django.apps import AppConfig


class TrainingConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "training"

    def ready(self):
        from ftplatform.liveness import register_reaper

        from .runs import reap_lost_runs

        register_reaper("training run", reap_lost_runs)
