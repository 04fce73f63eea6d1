
from django.core.management.base import BaseCommand, CommandError

from curation.selectors import snapshot_by_reference
from ftplatform.cli import json_object, user_named
from ftplatform.errors import ServiceError
from ftplatform.jobrows import JobStatus
from training.base_models import default_base_model
from training.models import BaseModel, TrainingRun
from training.progress import format_preflight, wait_for_training
from training.runs import preflight_training_run, resume_training_run, start_training_run


class Command(BaseCommand):
    help = ("LoRA-fine-tune a base model on an approved snapshot and wait for the run to finish "
            "(--dry-run: only the pre-flight report; --resume RUN: resume a failed or cancelled run).")

    def add_arguments(self, parser):
        parser.add_argument("--snapshot", help="Snapshot id, or a dataset name: its newest approved snapshot.")
        parser.add_argument("--resume", type=int, metavar="RUN", help="Resume this run from its last checkpoint.")
        parser.add_argument("--dry-run", action="store_true", help="Print the pre-flight report; create nothing.")
        parser.add_argument("--timeout-minutes", type=int, help="Fail the run as timed out after this long.")
        parser.add_argument("--base-model", help="Base model name (default: the configured default).")
        parser.add_argument("--hyperparameters", type=json_object, default={},
                            help='JSON, e.g. {"epochs": 1, "lora_rank": 8, "max_steps": 60}')
        parser.add_argument("--as", dest="username", required=True)
        parser.add_argument("--no-wait", action="store_true",
                            help="Return once the run is queued (with REDIS_URL set; without it jobs run in-process).")

    def handle(self, *args, snapshot, resume, dry_run, timeout_minutes, base_model, hyperparameters, username,
               no_wait, **options):
        user = user_named(username)
        if (snapshot is None) == (resume is None):
            raise CommandError("give --snapshot to start a run, or --resume RUN to resume one")
        if resume is not None and (dry_run or hyperparameters or timeout_minutes is not None or base_model):
            raise CommandError("--resume continues a run as it was created: it takes no --dry-run, "
                               "--hyperparameters, --timeout-minutes or --base-model")
        try:
            if resume is not None:
                run = TrainingRun.objects.filter(pk=resume).first()
                if run is None:
                    raise CommandError(f"no training run {resume}")
                run = resume_training_run(run, by=user)
            else:
                target = snapshot_by_reference(snapshot)
                model = BaseModel.objects.filter(name=base_model).first() if base_model else default_base_model()
                if model is None:
                    raise CommandError(f"no base model named {base_model!r}")
                if dry_run:
                    report = preflight_training_run(target, model, hyperparameters, by=user)
                    for line in format_preflight(report):
                        self.stdout.write(line)
                    if report["blocking"]:
                        raise CommandError("pre-flight found blocking problems (above); nothing was created")
                    return
                run = start_training_run(target, model, by=user, hyperparameters=hyperparameters,
                                         timeout_seconds=None if timeout_minutes is None else timeout_minutes * 60)
        except ServiceError as exc:
            raise CommandError(str(exc)) from exc
        run.refresh_from_db()  # without REDIS_URL the job already ran in this process
        if no_wait or run.status != JobStatus.SUCCEEDED:
            self.stdout.write(f"training run {run.pk} {run.status}; follow it at /api/v1/training-runs/{run.pk}/ "
                              f"or /admin/training/trainingrun/{run.pk}/change/")
        if no_wait:
            return
        # With REDIS_URL a worker trains: a bar follows the run's row. Without it the job already
        # ran and drew its own bar, and nothing is replayed.
        run = wait_for_training(run, self.stdout.write)
        if run.status != JobStatus.SUCCEEDED:
            raise CommandError(f"training run {run.pk} {run.status}: {run.error}")
        validation = run.metrics.get("eval_loss")
        self.stdout.write(f"training run {run.pk} succeeded: model version {run.model_version.pk}, "
                          f"train loss {run.metrics['train_loss']:.4f}"
                          + (f", validation loss {validation:.4f}" if validation is not None else "")
                          + f"; adapter and model card in {run.model_version.adapter_path}")
