"""The end-to-end main job on real data: curate -> snapshot -> LoRA fine-tune -> evaluate -> report."""
import json
import time

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand, CommandError
from django.urls import reverse

from curation.choices import ExampleStatus, ImportFormat, SnapshotStatus, Split
from curation.datasets import create_dataset
from curation.imports import describe_batch, import_examples
from curation.models import Dataset, Example
from curation.quality import describe_report
from curation.snapshots import approve_snapshot, create_snapshot
from curation.workflow import approve_examples
from evaluation.decision import decision_report, format_decision_report
from evaluation.progress import wait_for_evaluation
from evaluation.reports import format_report, model_version_report
from evaluation.services import start_eval_run
from ftml.config import LoraConfig
from ftplatform import queues
from ftplatform.cli import json_object
from ftplatform.errors import ServiceError
from ftplatform.jobrows import JobStatus
from ftplatform.roles import ANNOTATOR, ENGINEER, REVIEWER
from training.base_models import base_model_token_limits, default_base_model
from training.model_versions import few_shot_examples, prompted_model_version, update_model_version
from training.models import BaseModel, ModelVersion
from training.progress import wait_for_training
from training.runs import start_training_run

DATA_FILE = settings.BASE_DIR / "examples" / "e2e_nlg.chat.jsonl"
DATASET_NAME = "e2e-nlg-demo"
# Sized to finish in under 20 minutes on 2 CPU cores (see README, "What a longer run gives").
DEMO_HYPERPARAMETERS = {
    "lora_rank": 16,
    "lora_alpha": 32,
    "lora_dropout": 0.05,
    # Every linear layer of the blocks (attention and MLP): over q/k/v/o alone, better on the
    # validation split at 80 steps (BLEU 58.99 vs 56.97, loss 0.932 vs 1.006) for 1.4x the step time
    # (bench/recipe_bench.py, README "Training quality").
    "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
    "learning_rate": 1e-3,
    "batch_size": 8,
    "max_steps": 80,
    "max_seq_length": 160,
    "logging_steps": 5,
    "max_eval_examples": 32,
    "seed": 0,
}
DEMO_USERS = {"demo-annotator": ANNOTATOR, "demo-engineer": ENGINEER, "demo-reviewer": REVIEWER}


def demo_users() -> dict:
    """The demo's named users, each in the group of its role (ftplatform.roles)."""
    users = {}
    for username, role in DEMO_USERS.items():
        user, _ = get_user_model().objects.get_or_create(username=username, defaults={"is_staff": True})
        user.groups.add(Group.objects.get(name=role))
        users[username] = get_user_model().objects.get(pk=user.pk)  # fresh permission cache
    return users


def format_loss(value) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def first_system_prompt(raw_lines: list[bytes]) -> str:
    """The system message of the first record, which becomes the dataset's system prompt ('' if none)."""
    try:
        first = json.loads(raw_lines[0])["messages"][0]
    except (IndexError, KeyError, TypeError, ValueError):
        return ""  # the import below reports what is wrong with the file
    return first.get("content", "") if isinstance(first, dict) and first.get("role") == "system" else ""


class Command(BaseCommand):
    help = (
        "Run the whole platform on the E2E NLG data: import, review, snapshot, fine-tune "
        "SmolLM2-135M-Instruct with LoRA, evaluate it and the prompted base model, print the report."
    )

    def add_arguments(self, parser):
        parser.add_argument("--max-steps", type=int, default=DEMO_HYPERPARAMETERS["max_steps"],
                            help="Optimiser steps of the fine-tune (default %(default)s).")
        parser.add_argument("--hyperparameters", type=json_object, default={},
                            help="JSON overriding the demo hyperparameters.")
        parser.add_argument("--data", default=str(DATA_FILE), help="OpenAI chat JSONL to import.")
        parser.add_argument("--limit", type=int, default=0, help="Import only the first N records (0: all).")
        parser.add_argument("--base-model", help="Base model name (default: SmolLM2-135M-Instruct).")

    def step(self, text):
        self.stdout.write(self.style.MIGRATE_HEADING(f"\n== {text}"))

    def handle(self, *args, max_steps, hyperparameters, data, limit, base_model, **options):
        started = time.monotonic()
        mode = f"RQ workers via {settings.REDIS_URL}" if queues.is_async() else "in this process (no REDIS_URL)"
        self.stdout.write(f"database: {settings.DATABASES['default']['ENGINE'].rsplit('.', 1)[-1]}; jobs: {mode}")
        users = demo_users()
        annotator, engineer, reviewer = users["demo-annotator"], users["demo-engineer"], users["demo-reviewer"]

        self.step("1/7 Import examples")
        try:
            with open(data, "rb") as handle:
                raw_lines = [line for line in handle.read().split(b"\n") if line.strip()]
        except OSError as exc:
            raise CommandError(f"cannot read {data}: {exc.strerror}") from exc
        if limit:
            raw_lines = raw_lines[:limit]
        system_prompt = first_system_prompt(raw_lines)
        dataset = Dataset.objects.filter(name=DATASET_NAME).first() or create_dataset(
            by=engineer, name=DATASET_NAME, system_prompt=system_prompt,
            description="E2E NLG: restaurant attributes to one sentence (CC BY-SA 4.0).")
        batch = import_examples(dataset, b"\n".join(raw_lines), ImportFormat.CHAT_JSONL, by=annotator,
                                filename=str(data).rsplit("/", 1)[-1])
        for line in describe_batch(batch):
            self.stdout.write(line)
        if batch.status != JobStatus.SUCCEEDED:
            raise CommandError("the demo data did not import")

        self.step("2/7 Review examples")
        pending = Example.objects.filter(dataset=dataset, status=ExampleStatus.SUBMITTED)
        approved, problems = approve_examples(pending.iterator(), by=reviewer, comment="demo: approved as reviewer")
        total = Example.objects.filter(dataset=dataset, status=ExampleStatus.APPROVED).count()
        self.stdout.write(f"{reviewer} approved {approved} example(s); {total} approved in all")
        for problem in problems[:10]:
            self.stderr.write(problem)

        self.step("3/7 Snapshot and its review")
        base_model_name, base_model = base_model, default_base_model()
        if base_model_name:
            base_model = BaseModel.objects.filter(name=base_model_name).first()
            if base_model is None:
                raise CommandError(f"no base model named {base_model_name!r}")
        run_hyperparameters = {**DEMO_HYPERPARAMETERS, "max_steps": max_steps, **hyperparameters}
        try:
            config = LoraConfig.from_dict(run_hyperparameters)
        except ValueError as exc:
            raise CommandError(f"hyperparameters: {exc}") from exc
        try:
            # The quality gate counts tokens as the run will: this base model, this max_seq_length.
            tokens = base_model_token_limits(base_model, config.max_seq_length)
            snapshot, created = create_snapshot(dataset, by=engineer, seed=0, tokens=tokens)
            if snapshot.status == SnapshotStatus.PENDING_REVIEW:
                snapshot = approve_snapshot(snapshot, by=reviewer, comment="demo: reviewed split sizes")
        except ServiceError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(f"snapshot {snapshot.pk} ({'new' if created else 'existing'}): {snapshot.content_hash}\n"
                          f"  splits by example: {snapshot.split_counts}; status {snapshot.status} "
                          f"(reviewed by {snapshot.reviewed_by})")
        for line in describe_report(snapshot.quality_report):
            self.stdout.write(f"  {line}")
        if snapshot.status != SnapshotStatus.APPROVED:
            raise CommandError(f"snapshot {snapshot.pk} is {snapshot.status}; the demo needs an approved one")

        self.step(f"4/7 LoRA fine-tune ({max_steps} steps)")
        run = start_training_run(snapshot, base_model, by=engineer, hyperparameters=run_hyperparameters)
        run = wait_for_training(run, self.stdout.write)
        if run.status != JobStatus.SUCCEEDED:
            raise CommandError(f"training run {run.pk} {run.status}: {run.error}")
        tuned = run.model_version
        self.stdout.write(f"run {run.pk} succeeded in {run.metrics['wall_seconds']}s: train loss "
                          f"{run.metrics['train_loss']:.4f}, validation loss {format_loss(run.metrics['eval_loss'])}")

        self.step("5/7 Evaluate the prompted base model (zero- and 3-shot) and the fine-tuned model on the "
                  "validation split (where the routing threshold is chosen) and the test split")
        prompted, _ = prompted_model_version(base_model, snapshot.system_prompt, by=engineer)
        # A stronger prompting baseline: three worked examples from the train split before every input.
        few_shot, _ = prompted_model_version(base_model, snapshot.system_prompt, few_shot_examples(snapshot, 3),
                                             by=engineer)
        for split in (Split.VALIDATION, Split.TEST):
            for version in (prompted, few_shot, tuned):
                self.stdout.write(f"evaluating {version.name} [{split}]")
                eval_run = wait_for_evaluation(start_eval_run(version, snapshot, by=engineer, split=split),
                                               self.stdout.write)
                if eval_run.status != JobStatus.SUCCEEDED:
                    raise CommandError(f"eval run {eval_run.pk} {eval_run.status}: {eval_run.error}")

        self.step("6/7 Report")
        # All three run on this machine: price them alike per machine-hour (FTPLATFORM_GPU_HOUR_PRICE,
        # or 1.00 as an illustration) where nobody set a price, so the reports can show cost and break-even.
        price = settings.GPU_HOUR_PRICE or 1.0
        for version in ModelVersion.objects.filter(pk__in=[prompted.pk, few_shot.pk, tuned.pk],
                                                   price_per_gpu_hour__isnull=True,
                                                   price_per_million_input_tokens__isnull=True):
            update_model_version(version, by=engineer, prices={"price_per_gpu_hour": price})
        tuned.refresh_from_db()
        self.stdout.write(format_report(model_version_report(tuned)))
        self.stdout.write("")
        for line in format_decision_report(decision_report(dataset)):
            self.stdout.write(line)
        self.stdout.write(f"\nmodel version {tuned.pk}; REST: GET /api/v1/model-versions/{tuned.pk}/report/, "
                          f"GET /api/v1/decision-reports/?dataset={dataset.pk}")
        self.stdout.write(f"admin: {reverse('admin:evaluation_evalrun_decision')}?dataset={dataset.pk}, "
                          f"{reverse('admin:evaluation_evalrun_model_report', args=[tuned.pk])} (to look: "
                          "FTPLATFORM_DEBUG=1 .venv/bin/python manage.py assign_role demo-engineer engineer "
                          "--password <choose one>, then FTPLATFORM_DEBUG=1 .venv/bin/python manage.py runserver "
                          "and sign in as demo-engineer)")
        self.serve(dataset, snapshot, tuned, few_shot, engineer)
        self.stdout.write(f"demo finished in {time.monotonic() - started:.0f}s")

    def serve(self, dataset, snapshot, tuned, fallback, engineer):
        """Deploy the fine-tuned model with the 3-shot prompted base as its fallback (threshold chosen on the
        validation split), send the test split's inputs to /v1/chat/completions with the openai client (8 at a
        time), and print what the request log measured beside the evaluation's estimates."""
        from concurrent.futures import ThreadPoolExecutor

        from openai import OpenAI

        from evaluation.jobs import split_inputs
        from serving.deployments import create_deployment, update_deployment
        from serving.engines import close_model_servers
        from serving.keys import create_api_key
        from serving.local_server import local_server
        from serving.models import Deployment
        from serving.production import format_production

        self.step("7/7 Serve: the fine-tuned model at /v1/chat/completions, the 3-shot prompted base as its fallback")
        name = f"{dataset.name}-tuned"[:100]

        def deploy(with_fallback):
            existing = Deployment.objects.filter(name=name).first()
            if existing is None:
                return create_deployment(by=engineer, name=name, primary=tuned, fallback=with_fallback)
            return update_deployment(existing, by=engineer, primary=tuned, fallback=with_fallback, threshold=None,
                                     reason="demo: the new fine-tuned model", choose_again=with_fallback is not None)

        try:
            deployment = deploy(fallback)
        except ServiceError as exc:  # e.g. only "always fall back" reaches the fallback's quality on validation
            self.stdout.write(f"no routing threshold ({exc}): the fine-tuned model answers alone")
            deployment = deploy(None)
        source = deployment.threshold_source or {}
        if source.get("set_by") == "validation split" and source.get("never"):
            self.stdout.write(f"deployment {deployment.name}: never falls back: on the validation split the fine-tuned "
                              f"model alone scores {source['quality']:.2f}, above the fallback's "
                              f"{source['target_quality']:.2f}, so routing would only add cost")
        elif source.get("set_by") == "validation split":
            self.stdout.write(f"deployment {deployment.name}: falls back below confidence {deployment.threshold:.4g}, "
                              f"chosen on the validation split (expected {100 * source['fallback_share']:.0f} % to "
                              f"the fallback, quality {source['quality']:.2f} against the fallback's "
                              f"{source['target_quality']:.2f})")
        key = create_api_key(name="demo", deployment=deployment, by=engineer)[1]
        inputs = [entry["input_messages"] for entry in split_inputs(snapshot, Split.TEST)]
        try:
            with local_server() as url, OpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0,
                                               timeout=600) as client:
                def ask(messages):
                    return client.chat.completions.create(model=deployment.name, messages=messages, max_tokens=64,
                                                          metadata={"source": "demo"})

                with ThreadPoolExecutor(max_workers=8) as pool:
                    answers = list(pool.map(ask, inputs))
        finally:
            close_model_servers()
        roles = [a.model_extra["ftplatform"]["answered_by"] for a in answers]
        self.stdout.write(f"{len(answers)} test inputs sent through the openai client: {roles.count('primary')} "
                          f"answered by the fine-tuned model, {roles.count('fallback')} by the fallback")
        self.stdout.write(f"  e.g. {inputs[0][-1]['content'][:80]!r} -> {answers[0].choices[0].message.content!r}")
        for line in format_production(decision_report(dataset).get("production", [])):
            self.stdout.write(line)
        self.stdout.write(f"REST: GET /api/v1/request-logs/?deployment={deployment.pk}; turn logs into examples: "
                          "POST /api/v1/request-logs/to-dataset/")
