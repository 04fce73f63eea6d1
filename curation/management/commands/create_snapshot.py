
from django.core.management.base import BaseCommand, CommandError

from curation.models import Dataset
from curation.quality import describe_report
from curation.snapshots import create_snapshot
from ftplatform.cli import json_object, user_named
from ftplatform.errors import ServiceError


class Command(BaseCommand):
    help = "Freeze a dataset's approved examples into a snapshot (pending a reviewer's approval)."

    def add_arguments(self, parser):
        parser.add_argument("--dataset", required=True)
        parser.add_argument("--as", dest="username", required=True)
        parser.add_argument("--seed", type=int, default=0, help="Seed of the split (same data + seed = same split).")
        parser.add_argument("--fractions", type=json_object, help='e.g. {"train": 0.8, "validation": 0.1, "test": 0.1}')

    def handle(self, *args, dataset, username, seed, fractions, **options):
        target = Dataset.objects.filter(name=dataset).first()
        if target is None:
            raise CommandError(f"no dataset named {dataset!r}")
        try:
            snapshot, created = create_snapshot(target, by=user_named(username), seed=seed, fractions=fractions)
        except ServiceError as exc:
            raise CommandError(str(exc)) from exc
        verb = "created" if created else "exists"
        self.stdout.write(f"snapshot {snapshot.pk} {verb}: hash {snapshot.content_hash}, {snapshot.status}, "
                          f"splits {snapshot.split_counts}")
        for line in describe_report(snapshot.quality_report):
            self.stdout.write(f"  {line}")
