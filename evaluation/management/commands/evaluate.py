import json

from django.core.management.base import BaseCommand, CommandError

from curation.models import Snapshot
from evaluation.progress import describe_eval_progress
from evaluation.services import start_eval_run
from ftplatform.cli import user_named, wait_for_run
from ftplatform.errors import ServiceError
from training.choices import RunStatus
from training.models import ModelVersion


class Command(BaseCommand):
    help = "Evaluate a model version on a snapshot split and wait for the metrics."

    def add_arguments(self, parser):
        parser.add_argument("--model-version", type=int, required=True)
        parser.add_argument("--snapshot", type=int, required=True)
        parser.add_argument("--split", default="test")
        parser.add_argument("--generation", type=json.loads, default={}, help='e.g. {"max_new_tokens": 64}')
        parser.add_argument("--as", dest="username", required=True)

    def handle(self, *args, model_version, snapshot, split, generation, username, **options):
        version = ModelVersion.objects.filter(pk=model_version).first()
        target = Snapshot.objects.filter(pk=snapshot).first()
        if version is None or target is None:
            raise CommandError(f"no model version {model_version}" if version is None else f"no snapshot {snapshot}")
        try:
            run = start_eval_run(version, target, by=user_named(username), split=split, generation=generation)
        except ServiceError as exc:
            raise CommandError(str(exc)) from exc
        run = wait_for_run(run, describe_eval_progress, self.stdout.write)
        if run.status != RunStatus.SUCCEEDED:
            raise CommandError(f"eval run {run.pk} {run.status}: {run.error}")
        self.stdout.write(json.dumps(run.metrics, indent=2))
