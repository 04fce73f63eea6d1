import json

from django.core.management.base import BaseCommand, CommandError

from curation.selectors import snapshot_by_reference
from evaluation.progress import wait_for_evaluation
from evaluation.services import start_eval_run
from ftplatform.cli import json_object, user_named
from ftplatform.errors import ServiceError
from ftplatform.jobrows import JobStatus
from training.base_models import default_base_model
from training.model_versions import few_shot_examples, model_version_by_reference, prompted_model_version
from training.models import BaseModel


class Command(BaseCommand):
    help = (
        "Evaluate a model version on a snapshot split and wait for the metrics. "
        "--prompted-base evaluates the base model with the snapshot's system prompt: the baseline "
        "that `report` puts beside a fine-tuned model."
    )

    def add_arguments(self, parser):
        which = parser.add_mutually_exclusive_group(required=True)
        which.add_argument("--model-version",
                           help="Model version id or name, or a dataset name: its newest fine-tuned model.")
        which.add_argument("--prompted-base", action="store_true",
                           help="The base model (--base-model, default SmolLM2-135M-Instruct) with the "
                                "system prompt the snapshot froze.")
        parser.add_argument("--base-model", help="Base model name for --prompted-base.")
        parser.add_argument("--few-shot", type=int, default=0, metavar="K",
                            help="With --prompted-base: show K worked examples from the snapshot's train split "
                                 "before every input (default 0: zero-shot).")
        parser.add_argument("--few-shot-seed", type=int, default=0, help="Which train examples (default 0).")
        parser.add_argument("--snapshot", required=True,
                            help="Snapshot id, or a dataset name: its newest approved snapshot.")
        parser.add_argument("--split", default="test", choices=["train", "validation", "test"],
                            help="Snapshot split whose distinct inputs are answered (default: test).")
        parser.add_argument("--generation", type=json_object, default={}, help='e.g. {"max_new_tokens": 64}')
        parser.add_argument("--as", dest="username", required=True)

    def handle(self, *args, model_version, prompted_base, base_model, snapshot, split, generation, username,
               few_shot, few_shot_seed, **options):
        if few_shot and not prompted_base:
            raise CommandError("--few-shot goes with --prompted-base")
        user = user_named(username)
        try:
            target = snapshot_by_reference(snapshot)
            if prompted_base:
                base = BaseModel.objects.filter(name=base_model).first() if base_model else default_base_model()
                if base is None:
                    raise CommandError(f"no base model named {base_model!r}")
                shots = few_shot_examples(target, few_shot, seed=few_shot_seed) if few_shot else None
                version, _ = prompted_model_version(base, target.system_prompt, shots, by=user)
            else:
                version = model_version_by_reference(model_version)
            run = start_eval_run(version, target, by=user, split=split, generation=generation)
        except ServiceError as exc:
            raise CommandError(str(exc)) from exc
        run = wait_for_evaluation(run, self.stdout.write)
        if run.status != JobStatus.SUCCEEDED:
            raise CommandError(f"eval run {run.pk} {run.status}: {run.error}")
        self.stdout.write(f"{version.name} (model version {version.pk}) on snapshot {target.pk} [{split}]:")
        self.stdout.write(json.dumps(run.metrics, indent=2))
