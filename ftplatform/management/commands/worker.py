"""Run an RQ worker for ftplatform's queues (needs REDIS_URL)."""
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import connections

from ftplatform.queues import QUEUE_NAMES, get_connection, get_queue


class Command(BaseCommand):
    help = (
        "Run an RQ worker on the given queues (default: training evaluation default). "
        "The parent never imports torch; each job runs in a forked work-horse. "
        "Run one training worker per machine; torch threads = FTPLATFORM_TORCH_THREADS (default: all cores)."
    )

    def add_arguments(self, parser):
        parser.add_argument("queues", nargs="*", default=["training", "evaluation", "default"])
        parser.add_argument("--burst", action="store_true", help="Quit when the queues are empty.")
        parser.add_argument("--name", help="Worker name (default: RQ's host.pid).")

    def handle(self, *args, queues, burst, name, **options):
        if not settings.REDIS_URL:
            raise CommandError("REDIS_URL is not set: without it jobs run in-process and no worker is needed")
        unknown = [q for q in queues if q not in QUEUE_NAMES]
        if unknown:
            raise CommandError(f"unknown queue(s) {', '.join(unknown)}; expected {', '.join(QUEUE_NAMES)}")
        from rq import Worker

        # A forked work-horse must not share the parent's database connections.
        connections.close_all()
        worker = Worker([get_queue(q) for q in queues], connection=get_connection(), name=name)
        worker.work(burst=burst, with_scheduler=False)
