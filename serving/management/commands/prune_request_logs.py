from django.conf import settings
from django.core.management.base import BaseCommand

from ...logs import prune_request_logs


class Command(BaseCommand):
    help = ("Delete request logs older than FTPLATFORM_SERVING_LOG_RETENTION_DAYS (0: keep all). The workers do "
            "it periodically too; this is for cron.")

    def handle(self, *args, **options):
        deleted = prune_request_logs()
        days = settings.SERVING_LOG_RETENTION_DAYS
        self.stdout.write(f"Deleted {deleted} request log(s) older than {days} days." if days
                          else "Retention is 0 (keep every request log): nothing deleted.")
