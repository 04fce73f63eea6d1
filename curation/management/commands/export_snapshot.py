from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from curation.choices import ExportLayout
from curation.exports import HF_FOLDER, start_snapshot_export
from curation.hub_export import HUB_FOLDER
from curation.models import Snapshot
from ftplatform.cli import user_named, wait_for_run


class Command(BaseCommand):
    help = ("Export a snapshot as OpenAI chat JSONL, one file per split (train/validation/test.jsonl), and as a "
            "Hugging Face datasets folder (hf_dataset/, for datasets.load_from_disk); with --layout hub_parquet or "
            "hub_jsonl also a Hugging Face Hub dataset repo (hub_dataset/: data files per split and a dataset card).")

    def add_arguments(self, parser):
        parser.add_argument("snapshot_id", type=int)
        parser.add_argument("--as", dest="username", required=True)
        parser.add_argument("--layout", choices=ExportLayout.values, default=ExportLayout.FOLDER,
                            help="hub_parquet / hub_jsonl: also write a Hub dataset repo folder (default: folder)")

    def handle(self, *args, snapshot_id, username, layout, **options):
        snapshot = Snapshot.objects.filter(pk=snapshot_id).first()
        if snapshot is None:
            raise CommandError(f"no snapshot {snapshot_id}")
        export = wait_for_run(start_snapshot_export(snapshot, by=user_named(username), layout=layout),
                              lambda row, cursor: ([], cursor), self.stdout.write)
        if export.status != "succeeded":
            raise CommandError(f"export {export.pk} {export.status}: {export.error}")
        self.stdout.write(f"export {export.pk}: {export.path} {export.counts}")
        self.stdout.write(f"Hugging Face dataset: datasets.load_from_disk({str(Path(export.path) / HF_FOLDER)!r})")
        if layout != ExportLayout.FOLDER:
            self.stdout.write(f"Hugging Face Hub dataset repo: datasets.load_dataset("
                              f"{str(Path(export.path) / HUB_FOLDER)!r})")
