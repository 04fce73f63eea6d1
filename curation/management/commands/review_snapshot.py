from django.core.management.base import BaseCommand, CommandError

from curation.choices import SnapshotStatus
from curation.selectors import snapshot_by_reference
from curation.snapshots import approve_snapshot, reject_snapshot
from ftplatform.cli import user_named
from ftplatform.errors import ServiceError


class Command(BaseCommand):
    help = "Approve or reject a pending snapshot as a reviewer other than its creator."

    def add_arguments(self, parser):
        parser.add_argument("snapshot", help="Snapshot id, or a dataset name: its newest snapshot pending review.")
        parser.add_argument("--as", dest="username", required=True)
        decision = parser.add_mutually_exclusive_group(required=True)
        decision.add_argument("--approve", action="store_true")
        decision.add_argument("--reject", action="store_true")
        parser.add_argument("--comment", default="")

    def handle(self, *args, snapshot, username, approve, reject, comment, **options):
        review = approve_snapshot if approve else reject_snapshot
        try:
            snapshot = snapshot_by_reference(snapshot, status=SnapshotStatus.PENDING_REVIEW)
            snapshot = review(snapshot, by=user_named(username), comment=comment)
        except ServiceError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(f"snapshot {snapshot.pk} is now {snapshot.status}")
