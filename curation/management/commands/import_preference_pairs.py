from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from curation.models import Dataset
from curation.preferences import import_preference_pairs
from ftplatform.cli import user_named
from ftplatform.errors import ServiceError


class Command(BaseCommand):
    help = ("Import a JSONL file of pairwise preferences in OpenAI's DPO format ({input, preferred_output, "
            "non_preferred_output} per line) into a dataset, all or nothing unless --skip-invalid.")

    def add_arguments(self, parser):
        parser.add_argument("file", type=Path)
        parser.add_argument("--dataset", required=True, help="Dataset name.")
        parser.add_argument("--as", dest="username", required=True, help="User recorded as the importer.")
        parser.add_argument("--skip-invalid", action="store_true", help="Import valid lines; list every skipped one.")

    def handle(self, *args, file, dataset, username, skip_invalid, **options):
        user = user_named(username)
        target = Dataset.objects.filter(name=dataset).first()
        if target is None:
            raise CommandError(f"no dataset named {dataset!r}")
        if not file.is_file():
            raise CommandError(f"{file}: no such file")
        try:
            with open(file, "rb") as handle:
                outcome = import_preference_pairs(target, handle, by=user, skip_invalid=skip_invalid)
        except ServiceError as exc:
            raise CommandError(f"{file.name}: {exc}") from exc
        for line in outcome.describe():
            self.stdout.write(line)
        if not outcome.imported:
            raise CommandError(f"import refused: {len(outcome.errors)} invalid line(s); nothing was imported")
