from django.apps import AppConfig


class ServingConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "serving"

    def ready(self):
        from evaluation.decision import register_report_section
        from ftplatform.liveness import register_housekeeping

        from .logs import prune_request_logs
        from .production import format_production, production_view

        register_housekeeping("request log retention", prune_request_logs)
        register_report_section("production", production_view, format_production)
