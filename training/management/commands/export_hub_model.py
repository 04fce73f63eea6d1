from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from ftplatform.cli import user_named
from ftplatform.errors import ServiceError
from training.hub_export import export_hub_adapter
from training.models import ModelVersion


class Command(BaseCommand):
    help = ("Write a LoRA model version as a Hugging Face Hub model repo folder: the adapter, its adapter_config.json "
            "naming the base model by its Hub id, and a model card with the evaluation results (model-index).")

    def add_arguments(self, parser):
        parser.add_argument("--model-version", dest="model_version", type=int, required=True,
                            help="Model version id (a LoRA adapter).")
        parser.add_argument("--as", dest="username", required=True)
        parser.add_argument("--output", type=Path,
                            help="Folder to create (must not exist); default: ARTIFACTS_ROOT/hub/model-version-<id>.")
        parser.add_argument("--hub-id", default="",
                            help="The base model's Hub repo id (default: the one recorded on the base model).")

    def handle(self, *args, model_version, username, output, hub_id, **options):
        version = ModelVersion.objects.select_related("base_model", "training_run__snapshot__dataset").filter(
            pk=model_version).first()
        if version is None:
            raise CommandError(f"no model version {model_version}")
        try:
            path = export_hub_adapter(version, by=user_named(username), output_dir=output, hub_id=hub_id)
        except ServiceError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(f"model version {version.pk} as a Hub model repo: {path}")
        self.stdout.write(f"upload it with: huggingface-cli upload YOUR-NAME/REPO {path} .")
