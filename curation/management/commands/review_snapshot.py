from django.core.management.base import BaseCommand, CommandError

from curation.models import Snapshot
from curation.snapshots import approve_snapshot, reject_snapshot
from ftplatform.cli import user_named
from ftplatform.errors import ServiceError


class Command(BaseCommand):
    help = "Approve or reject a pending snapshot as a reviewer other than its creator."

    def add_arguments(self, parser):
        parser.add_argument("snapshot_id", type=int)
        parser.add_argument("--as", dest="username", required=True)
        decision = parser.add_mutually_exclusive_group(required=True)
        decision.add_argument("--approve", action="store_true")
        decision.add_argument("--reject", action="store_true")
        parser.add_argument("--comment", default="")

    def handle(self, *args, snapshot_id, username, approve, reject, comment, **options):
        snapshot = Snapshot.objects.filter(pk=snapshot_id).first()
        if snapshot is None:
            raise CommandError(f"no snapshot {snapshot_id}")
        review = approve_snapshot if approve else reject_snapshot
        try:
            snapshot = review(snapshot, by=user_named(username), comment=comment)
        except ServiceError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(f"snapshot {snapshot.pk} is now {snapshot.status}")
