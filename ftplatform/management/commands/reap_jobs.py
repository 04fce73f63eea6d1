"""Fail running training and eval runs whose worker is gone (ftplatform.liveness.reap_all)."""
from django.core.management.base import BaseCommand

from ftplatform.liveness import reap_all


class Command(BaseCommand):
    help = ("Fail running training and eval runs whose job stopped sending heartbeats (worker killed, out of "
            "memory, machine gone) as 'worker lost'. Workers do this every heartbeat interval; run it from cron "
            "when no worker is up, or after a crash of a process that ran jobs in-process (no REDIS_URL).")

    def handle(self, *args, **options):
        for kind, ids in reap_all().items():
            for row_id in ids:
                self.stdout.write(f"{kind} {row_id}: worker lost, marked failed")
            if not ids:
                self.stdout.write(f"no lost {kind}s")
