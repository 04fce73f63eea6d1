import json

from django.core.management.base import BaseCommand, CommandError

from curation.selectors import dataset_named
from evaluation.decision import decision_report, format_decision_report
from evaluation.reports import format_report, model_version_report
from ftml.metrics import ALWAYS_SCORED
from ftplatform.errors import ServiceError
from training.model_versions import model_version_by_reference


class Command(BaseCommand):
    help = ("Print a model version's report (lineage and metrics beside the prompted base model's), or with "
            "--decision DATASET the decision report: the fine-tuned model against its prompted baselines.")

    def add_arguments(self, parser):
        parser.add_argument("model_version", nargs="?",
                            help="Model version id or name, or a dataset name: its newest fine-tuned model.")
        parser.add_argument("--decision", metavar="DATASET", help="Dataset name or id: the decision report.")
        parser.add_argument("--metric", help="The metric the decision report's verdict and routing use (default: the "
                                              f"snapshot's primary metric): {', '.join(ALWAYS_SCORED)}, or a JSON "
                                              "or regex check the snapshot scores.")
        parser.add_argument("--json", dest="as_json", action="store_true", help="Print the report as JSON.")

    def handle(self, *args, model_version, decision, metric, as_json, **options):
        if (model_version is None) == (decision is None):
            raise CommandError("give a model version (id, name or dataset name), or --decision DATASET")
        if metric and decision is None:  # the model report lists every metric: a --metric would go unused
            raise CommandError("--metric goes with --decision DATASET")
        if decision is not None:
            dataset = dataset_named(decision)
            if dataset is None:
                raise CommandError(f"no dataset named {decision!r} (nor with that id)")
            try:
                report = decision_report(dataset, metric=metric)
            except ServiceError as exc:
                raise CommandError(str(exc)) from exc
            self.stdout.write(json.dumps(report, indent=2) if as_json else "\n".join(format_decision_report(report)))
            return
        try:
            version = model_version_by_reference(model_version)
        except ServiceError as exc:
            raise CommandError(str(exc)) from exc
        report = model_version_report(version)
        self.stdout.write(json.dumps(report, indent=2) if as_json else format_report(report))
