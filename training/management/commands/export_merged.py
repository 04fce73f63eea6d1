from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from ftplatform.cli import user_named
from ftplatform.errors import ServiceError
from training.exports import MAX_LOGIT_DIFFERENCE, export_merged_model, read_export_record
from training.model_versions import model_version_by_reference


class Command(BaseCommand):
    help = ("Merge a LoRA model version's adapter into its base model and save a standalone transformers "
            "folder, verified against base + adapter.")

    def add_arguments(self, parser):
        parser.add_argument("--model-version", dest="model_version", required=True,
                            help="Model version (a LoRA adapter): id or name, or a dataset name: its newest.")
        parser.add_argument("--as", dest="username", required=True)
        parser.add_argument("--output", type=Path,
                            help="Folder to create (must not exist); default: "
                                 "ARTIFACTS_ROOT/merged/model-version-<id>.")

    def handle(self, *args, model_version, username, output, **options):
        try:
            version = model_version_by_reference(model_version)
        except ServiceError as exc:
            raise CommandError(str(exc)) from exc
        user = user_named(username)
        from training.jobs import prepare_torch

        prepare_torch()
        try:
            path = export_merged_model(version, by=user, output_dir=output)
        except ServiceError as exc:
            raise CommandError(str(exc)) from exc
        difference = read_export_record(path)["max_logit_difference"]
        self.stdout.write(f"merged model version {version.pk} into {path}")
        self.stdout.write(f"max |logit difference| against base + adapter: {difference:.2e} "
                          f"(allowed {MAX_LOGIT_DIFFERENCE:g})")
