from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from curation import access
from curation.models import Dataset
from curation.preferences import preference_lines
from ftplatform.cli import user_named


class Command(BaseCommand):
    help = "Write a dataset's preference pairs as JSONL in OpenAI's DPO format: each the line it was imported from."

    def add_arguments(self, parser):
        parser.add_argument("output", type=Path, help="The JSONL file to write.")
        parser.add_argument("--dataset", required=True, help="Dataset name.")
        parser.add_argument("--as", dest="username", required=True, help="Exports the pairs this user may see.")

    def handle(self, *args, output, dataset, username, **options):
        user = user_named(username)
        target = Dataset.objects.filter(name=dataset).first()
        if target is None:
            raise CommandError(f"no dataset named {dataset!r}")
        pairs = access.visible_preference_pairs(user).filter(dataset=target)
        count = 0
        with open(output, "w", encoding="utf-8") as handle:
            for line in preference_lines(pairs):
                handle.write(line)
                count += 1
        self.stdout.write(f"{count} preference pair(s) of {target} written to {output}")
