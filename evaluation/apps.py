from django.apps import AppConfig


class EvaluationConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "evaluation"

    def ready(self):
        from ftplatform.liveness import register_reaper
        from training.hub_export import register_eval_results

        from .model_cards import model_index_results
        from .services import reap_lost_eval_runs

        register_reaper("eval run", reap_lost_eval_runs)
        register_eval_results(model_index_results)
