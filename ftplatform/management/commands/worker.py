"""Run an RQ worker for ftplatform's queues (needs REDIS_URL)."""
import logging
import math
import threading
import time

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import connection, connections

from ftplatform.liveness import HOUSEKEEPING, HOUSEKEEPING_SECONDS, reap_all
from ftplatform.queues import QUEUE_NAMES, get_connection, get_queue

logger = logging.getLogger(__name__)


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

        if {"training", "evaluation"} & set(queues):
            threading.Thread(target=reap_forever, name="reap-lost-runs", daemon=True).start()
        # A forked work-horse must not share the parent's database connections.
        connections.close_all()
        worker = Worker([get_queue(q) for q in queues], connection=get_connection(), name=name)
        worker.work(burst=burst, with_scheduler=False)


def reap_forever():
    """Every heartbeat interval, fail training and eval runs whose worker is gone
    (ftplatform.liveness.reap_all).

    Runs in the worker's parent, which never imports torch; its connection is closed after each
    pass so a forked work-horse never inherits an open one. About hourly it also runs the apps'
    housekeeping (ftplatform.liveness.HOUSEKEEPING: e.g. the request log's retention)."""
    last_housekeeping = -math.inf
    while True:
        try:
            for kind, ids in reap_all().items():
                for row_id in ids:
                    logger.warning("%s %s: worker lost, marked failed", kind, row_id)
            if time.monotonic() - last_housekeeping >= HOUSEKEEPING_SECONDS:
                last_housekeeping = time.monotonic()
                for name, task in HOUSEKEEPING.items():
                    logger.info("%s: %d row(s) removed", name, task())
        except Exception:
            logger.exception("reaping lost job rows or housekeeping failed; retrying")
        finally:
            connection.close()
        time.sleep(settings.TRAINING_HEARTBEAT_SECONDS)
