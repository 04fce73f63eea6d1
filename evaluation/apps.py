from django.apps import AppConfig


class EvaluationConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "evaluation"

    def ready(self):
        from ftplatform.liveness import register_reaper

        from .services import reap_lost_eval_runs

        register_reaper("eval run", reap_lost_eval_runs)
