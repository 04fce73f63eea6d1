import json

from django.core.management.base import BaseCommand, CommandError

from evaluation.reports import format_report, model_version_report
from training.models import ModelVersion


class Command(BaseCommand):
    help = "Print a model version's report: lineage and metrics beside the prompted base model's."

    def add_arguments(self, parser):
        parser.add_argument("model_version", type=int)
        parser.add_argument("--json", dest="as_json", action="store_true", help="Print the report as JSON.")

    def handle(self, *args, model_version, as_json, **options):
        version = ModelVersion.objects.filter(pk=model_version).first()
        if version is None:
            raise CommandError(f"no model version {model_version}")
        report = model_version_report(version)
        self.stdout.write(json.dumps(report, indent=2) if as_json else format_report(report))
